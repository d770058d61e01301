"""Export: trained Recognizer checkpoints -> the competition's TFLite artifact.

`tflite` builds the serving graph of an ensemble (preprocessing, encoders, confidence rule,
cached greedy decoding), converts it with TFLite builtins only and checks the submission
contract; `submission` packs `model.tflite` + `inference_args.json` into `submission.zip`.
"""
