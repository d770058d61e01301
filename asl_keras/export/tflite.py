"""Native TFLite export of a Recognizer ensemble, with the submission contract checked.

The serving graph (one signature `serving_default`, input `inputs` float32 `[frames, 390]` in
`SELECTED_COLUMNS` order with NaN for missing points, output `outputs` float32 `[n, 59]`):
1. frame count `T`; a 0-frame input becomes one NaN frame. The IF of step 2 already keeps 0
   frames away from the preprocessing in the runtimes tested (LiteRT 2.3, tf.lite 2.21), but
   a runtime may prepare both IF branches with the input's shape, and XNNPack fails on
   0-sized tensors and stays broken afterwards (ecosystem.md 4, pitfall 4): one PAD op makes
   that impossible;
2. `T < MIN_FRAMES`: no decoding at all;
3. otherwise `preprocess.preprocess(frames, max_len)`, the evaluation preprocessing itself
   (normalisation, NaN/inf handling, nearest resampling or padding to `max_len` + mask), cut
   back to the real frames when every member is padding-invariant (`padding_invariant`: the
   result is the same, the encoder cost follows the clip length), every member's encoder,
   and the mean of the members' confidence logits (models with a confidence head):
   `sigmoid(mean) < MIN_CONFIDENCE` means no decoding either;
4. cached greedy decoding of the ensemble (`greedy_decode`: one `WHILE`, member logits
   averaged every step, stop at EOS, at most `LABEL_LEN` steps);
5. the characters before the first EOS (ids outside the 59-character map are dropped, as
   `vocab.decode` drops them); no character at all -> `DUMMY_PHRASE`. Steps 2-3 produce "no
   character", so this one rule implements the reference's dummy-phrase post-processing and
   also keeps the output at >= 1 row;
6. one-hot rows `[n, 59]`: every row's argmax is a real character, so the output decodes the
   same whether or not a scorer maps unknown ids to "".

`keras_texts` computes the same strings without TFLite (batched preprocessing + greedy decoding
in TF, then `metrics.postprocess` in Python): the parity check and `asl_keras.evaluate` compare
the two implementations.

Conversion uses `keras.export.ExportArchive` (ecosystem.md 4, Fix B): a `tf.Module` around Keras
3 layers would keep unresolved `READ_VARIABLE` ops and silently produce garbage; the contract
check rejects such files anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from asl_keras import config, landmarks, vocab
from asl_keras.data import preprocess, synthetic
from asl_keras.export import submission
from asl_keras.layers.decoder import greedy_decode
from asl_keras.models.recognizer import Recognizer, build_recognizer
from asl_keras.training.metrics import MIN_CONFIDENCE, MIN_FRAMES, normalized_total, postprocess

SIGNATURE, INPUT, OUTPUT = "serving_default", "inputs", "outputs"
# The competition's 40 MB, read as 10^6 bytes: the stricter reading of "MB" (40 MiB would
# allow 41.9e6), so a file that passes here passes under either.
SIZE_LIMIT = 40_000_000
# Parity = normalized total Levenshtein of the TFLite strings against the Keras strings. fp32
# must decode identically. For fp16, 0.998 bounds the score change on any labelled set of
# similar length by ~0.002 (the triangle inequality: |D(t, a) - D(t, b)| <= D(a, b)).
PARITY_MIN = {False: 1.0, True: 0.998}  # keyed by fp16
VARIABLE_OPS = frozenset({"READ_VARIABLE", "VAR_HANDLE", "ASSIGN_VARIABLE"})
NO_CHARACTERS = np.full(vocab.LABEL_LEN + 1, vocab.EOS, np.int32)  # decoder ids of ""


class ExportError(RuntimeError):
    """The converted model breaks the submission contract; the message says how."""


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def float32_policy():
    """Build under float32: a mixed-precision model cannot be converted (bf16 KV cache and
    dtype clashes, ecosystem.md 4, pitfall 7); its float32 weights load unchanged."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def load_models(cfg: config.Config, checkpoints: Sequence[str]) -> list[Recognizer]:
    """float32 Recognizers of `cfg`, one per `.weights.h5` checkpoint (`model.save_weights`)."""
    if not checkpoints:
        raise ValueError("at least one checkpoint is needed")
    models = []
    with float32_policy():
        for path in checkpoints:
            model = build_recognizer(cfg)
            model.load_weights(path)
            models.append(model)
    return models


def _encode(models: Sequence[Recognizer], x, mask):
    """`[B, L, 130, 3]`, `[B, L]` -> (greedy_decode members, mean confidence logit `[B]`).

    The confidence is None when the models have no confidence head (cfg_1).
    """
    members, logits = [], []
    for model in models:
        encoded = model.encode(x, mask)
        members.append((model.decoder, encoded, mask))
        if model.confidence_head is not None:
            logits.append(model.confidence(encoded))
    return members, (tf.add_n(logits) / len(logits) if logits else None)


# ---------------------------------------------------------------------------------------------
# The serving graph
# ---------------------------------------------------------------------------------------------


def _at_least_one_frame(frames):
    """`[T, F]` -> `[max(T, 1), F]`: a 0-frame input gets one all-NaN (= all missing) frame."""
    missing = tf.maximum(1 - tf.shape(frames)[0], 0)
    return tf.pad(frames, [[0, missing], [0, 0]], constant_values=float("nan"))


def _recognise(models, frames, max_len: int):
    """`[T, F]` frames -> decoder ids `[LABEL_LEN + 1]` (SOS first), or no characters when the
    ensemble is unsure (mean confidence below MIN_CONFIDENCE)."""
    x, mask = preprocess.preprocess(frames, max_len)
    if all(m.padding_invariant for m in models):
        # Padding cannot change these models' outputs, so the encoders run on the real frames
        # only: a 100-frame clip costs 100 frames of encoder, not max_len.
        real = tf.minimum(tf.shape(frames)[0], max_len)
        x, mask = x[:real], mask[:real]
    members, confidence = _encode(models, x[None], mask[None])

    def decode():
        return greedy_decode(members)[0][0]

    if confidence is None:
        return decode()
    return tf.cond(tf.sigmoid(confidence[0]) < MIN_CONFIDENCE,
                   lambda: tf.constant(NO_CHARACTERS), decode)


def _characters(ids):
    """Decoder ids `[L]` -> character ids `[n >= 1]`: `vocab.decode`'s characters, or those of
    DUMMY_PHRASE when there are none (the dummy-phrase rule)."""
    tokens = ids[1:]
    before_eos = tf.equal(tf.cumsum(tf.cast(tf.equal(tokens, vocab.EOS), tf.int32)), 0)
    chars = tf.boolean_mask(tokens, before_eos & (tokens < vocab.NUM_CHARS))
    chars = tf.cond(tf.size(chars) > 0, lambda: chars,
                    lambda: tf.constant(vocab.encode(vocab.DUMMY_PHRASE)))
    return tf.reshape(chars, [-1])  # the cond loses the rank; the signature should say [n, 59]


def serving_function(models: Sequence[Recognizer], max_len: int):
    """The `serving_default` function: `inputs [T, F]` -> `{"outputs": [n, 59]}` (module doc)."""

    def serve(inputs):
        frames = _at_least_one_frame(inputs)
        ids = tf.cond(tf.shape(inputs)[0] < MIN_FRAMES, lambda: tf.constant(NO_CHARACTERS),
                      lambda: _recognise(models, frames, max_len))
        return {OUTPUT: tf.one_hot(_characters(ids), vocab.NUM_CHARS)}

    return serve


def convert(models: Sequence[Recognizer], max_len: int, fp16: bool = True) -> bytes:
    """The TFLite flatbuffer of the ensemble's serving function (TFLITE_BUILTINS only).

    `fp16` stores weights as float16 (dequantised at load; half the size), the usual
    competition setting.
    """
    archive = keras.export.ExportArchive()
    for model in models:
        archive.track(model)
    spec = tf.TensorSpec([None, len(landmarks.SELECTED_COLUMNS)], tf.float32, name=INPUT)
    archive.add_endpoint(SIGNATURE, serving_function(models, max_len), input_signature=[spec])
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if fp16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


# ---------------------------------------------------------------------------------------------
# Running a converted model
# ---------------------------------------------------------------------------------------------


def runner(model, num_threads: int | None = None):
    """`serving_default` signature runner of `model` (flatbuffer bytes or a .tflite path) on the
    LiteRT interpreter, the runtime of the competition scorer."""
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    return Interpreter(num_threads=num_threads, **source).get_signature_runner(SIGNATURE)


def outputs_to_text(outputs: np.ndarray) -> str:
    """The scorer's reading of `outputs [n, >=59]`: row-wise argmax through the character map
    (ids outside it give "")."""
    return "".join(vocab.ID_TO_CHAR.get(int(i), "") for i in np.argmax(outputs, axis=1))


def tflite_text(signature_runner, frames: np.ndarray) -> str:
    """Prediction for one sequence `[T, F]` float32 (NaN = missing)."""
    return outputs_to_text(signature_runner(**{INPUT: frames})[OUTPUT])


# ---------------------------------------------------------------------------------------------
# The Keras reference
# ---------------------------------------------------------------------------------------------


def keras_texts(models: Sequence[Recognizer], max_len: int, sequences: Sequence[np.ndarray],
                batch_size: int = 16) -> list[str]:
    """Predictions of the ensemble for `[T >= 1, F]` sequences, computed without TFLite.

    Same preprocessing and greedy decoding (batched: a sample's ids do not depend on its
    batch), then the rules in Python: `metrics.postprocess` (short, unsure or empty ->
    DUMMY_PHRASE). An independent implementation of the serving
    graph's steps 2, 3 and 5, which the parity check compares against.
    """
    width = len(landmarks.SELECTED_COLUMNS)
    prepare = tf.function(lambda frames: preprocess.preprocess(frames, max_len),
                          input_signature=[tf.TensorSpec([None, width], tf.float32)])

    @tf.function(input_signature=[tf.TensorSpec([None, max_len, landmarks.NUM_LANDMARKS, 3]),
                                  tf.TensorSpec([None, max_len])])
    def decode(x, mask):
        members, confidence = _encode(models, x, mask)
        return greedy_decode(members)[0], None if confidence is None else tf.sigmoid(confidence)

    texts = []
    for start in range(0, len(sequences), batch_size):
        batch = [np.asarray(f, np.float32) for f in sequences[start:start + batch_size]]
        xs, masks = zip(*(prepare(f) for f in batch), strict=True)
        ids, confidence = decode(tf.stack(xs), tf.stack(masks))
        for i, frames in enumerate(batch):
            conf = None if confidence is None else float(confidence[i])
            texts.append(postprocess(vocab.decode(ids[i, 1:].numpy()), len(frames), conf))
    return texts


# ---------------------------------------------------------------------------------------------
# Contract checks
# ---------------------------------------------------------------------------------------------


def operator_names(model: bytes) -> set[str]:
    """Operator codes used anywhere in the flatbuffer (all subgraphs): builtin names, and
    `CUSTOM:<code>` for custom or Flex ops. Read from the schema, not the Analyzer's text dump,
    whose format is explicitly unstable."""
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    root = schema.Model.GetRootAs(model, 0)
    names = set()
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        # codes >= 127 live in builtin_code, older ones in deprecated_builtin_code
        name = builtin[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        names.add(f"CUSTOM:{code.CustomCode().decode()}" if name == "CUSTOM" else name)
    return names


def _signature_problems(model: bytes) -> list[str]:
    """What differs from the one `serving_default(inputs [-1, 390]) -> outputs [-1, >=59]`."""
    interpreter = Interpreter(model_content=model)
    expected = {SIGNATURE: {"inputs": [INPUT], "outputs": [OUTPUT]}}
    if interpreter.get_signature_list() != expected:
        return [f"signatures {interpreter.get_signature_list()}, expected {expected}"]
    run = interpreter.get_signature_runner(SIGNATURE)
    problems = []
    for kind, details, wanted in (("input", run.get_input_details()[INPUT], "[-1, 390]"),
                                  ("output", run.get_output_details()[OUTPUT], "[-1, >= 59]")):
        shape = [int(d) for d in details["shape_signature"]]
        ok = len(shape) == 2 and shape[0] == -1 and (
            shape[1] == len(landmarks.SELECTED_COLUMNS) if kind == "input"
            else shape[1] >= vocab.NUM_CHARS)
        if details["dtype"] != np.float32 or not ok:
            problems.append(f"{kind} is {np.dtype(details['dtype']).name} {shape}, expected "
                            f"float32 {wanted}")
    return problems


def check_contract(model: bytes, size_limit: int = SIZE_LIMIT) -> set[str]:
    """Raise ExportError unless `model` meets the submission contract; return its op names.

    Checks: the one signature and its tensor names, dtypes and shapes; builtin ops only and no
    variable ops (unfrozen Keras variables convert "fine" and run as garbage); size.
    """
    ops = operator_names(model)
    problems = _signature_problems(model)
    bad = sorted(op for op in ops if op in VARIABLE_OPS or op.startswith("CUSTOM"))
    if bad:
        problems.append(f"non-builtin or variable ops {bad} (only TFLite builtins run in the "
                        "scorer; variable ops mean unfrozen weights)")
    if len(model) > size_limit:
        problems.append(f"{submission.MODEL_FILE} is {len(model) / 1e3:,.0f} kB, over the "
                        f"limit of {size_limit / 1e3:,.0f} kB: use fp16 weights (no --no-fp16), "
                        "fewer checkpoints or a smaller model")
    if problems:
        raise ExportError("the converted model breaks the submission contract:\n  "
                          + "\n  ".join(problems))
    return ops


def clip_latencies_ms(signature_runner, frames: int, repeats: int) -> np.ndarray:
    """Milliseconds of each of `repeats` calls on a `frames`-frame sample clip (the first,
    allocating call is made before and not counted)."""
    clip = sample_sequences(1, seed=0)[0]
    x = np.resize(clip, (frames, clip.shape[1])).astype("float32")
    signature_runner(inputs=x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        signature_runner(inputs=x)
        times.append(1000 * (time.perf_counter() - start))
    return np.asarray(times)


def sample_sequences(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` synthetic clips `[T, 390]` (phrases of the competition kind, random signers)."""
    position = {c: i for i, c in enumerate(landmarks.raw_columns())}
    columns = [position[c] for c in landmarks.SELECTED_COLUMNS]
    rng = np.random.default_rng(seed)
    return [synthetic.render_sequence(synthetic.train_phrase(rng), int(rng.integers(255)),
                                      rng)[0][:, columns] for _ in range(count)]


def check_parity(model: bytes, models: Sequence[Recognizer], max_len: int,
                 sequences: Sequence[np.ndarray], minimum: float) -> float:
    """Agreement of TFLite with Keras on `sequences` (see PARITY_MIN); ExportError if below."""
    run = runner(model)
    lite = [tflite_text(run, f) for f in sequences]
    reference = keras_texts(models, max_len, sequences)
    agreement = normalized_total(reference, lite)
    if agreement < minimum:
        differ = [(k, t) for k, t in zip(reference, lite, strict=True) if k != t]
        raise ExportError(f"TFLite and Keras disagree on {len(differ)}/{len(sequences)} sample "
                          f"sequences (agreement {agreement:.4f} < {minimum}); first: Keras "
                          f"{differ[0][0]!r}, TFLite {differ[0][1]!r}")
    return agreement


# ---------------------------------------------------------------------------------------------
# The whole export
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote and measured."""

    model_path: str
    size_bytes: int
    fp16: bool
    convert_seconds: float
    ops: list[str]
    parity: float | None  # None when no parity sequences were run
    submission_path: str | None

    def summary(self) -> str:
        parity = "not run" if self.parity is None else f"{self.parity:.4f}"
        lines = [f"{self.model_path}: {self.size_bytes / 1e3:,.0f} kB "
                 f"({'fp16' if self.fp16 else 'fp32'} weights), converted in "
                 f"{self.convert_seconds:.0f} s",
                 f"ops ({len(self.ops)}, builtin only): {' '.join(self.ops)}",
                 f"parity with Keras (normalized Levenshtein): {parity}"]
        if self.submission_path:
            lines.append(f"submission: {self.submission_path}")
        return "\n".join(lines)


def export(config_path: str, checkpoints: Sequence[str], out_dir: str, fp16: bool = True,
           make_submission: bool = False, parity_sequences: int = 32,
           size_limit: int | None = None) -> ExportResult:
    """Checkpoints of `config_path` -> `out_dir/model.tflite` + `inference_args.json`
    (+ `submission.zip`), contract and parity checked; raises ExportError on a violation (the
    files stay for inspection, the zip is not written). `size_limit` defaults to SIZE_LIMIT."""
    cfg = config.load(config_path)
    models = load_models(cfg, checkpoints)
    start = time.perf_counter()
    model = convert(models, cfg.data.max_len, fp16)
    seconds = time.perf_counter() - start
    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, submission.MODEL_FILE)
    with open(model_path, "wb") as f:
        f.write(model)
    submission.write_inference_args(out_dir)
    ops = check_contract(model, SIZE_LIMIT if size_limit is None else size_limit)
    parity = (check_parity(model, models, cfg.data.max_len, sample_sequences(parity_sequences),
                           PARITY_MIN[fp16]) if parity_sequences else None)
    zip_path = submission.write_submission(out_dir) if make_submission else None
    return ExportResult(model_path, len(model), fp16, seconds, sorted(ops), parity, zip_path)
