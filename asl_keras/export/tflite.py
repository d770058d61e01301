"""Native TFLite export of a Recognizer ensemble, with the submission contract checked.

The serving graph (one signature `serving_default`, input `inputs` float32 `[frames, 390]` in
`SELECTED_COLUMNS` order with NaN for missing points, output `outputs` float32 `[n, 59]`):
1. a 0-frame input becomes one NaN frame (XNNPack fails on 0-sized tensors and stays broken
   afterwards);
2. `encoder_inputs`: `preprocess.preprocess(frames, max_len)`, the evaluation preprocessing
   itself (normalisation, NaN/inf handling, nearest resampling or padding to `max_len` +
   mask), cut to the frames the encoders see (`encoder_frames`: the real ones, at least
   MIN_FRAMES);
3. every member's encoder, and the mean of the members' confidence logits (models with a
   confidence head); the members' CTC heads when the decoding mode uses them;
4. decoding of the ensemble in the mode chosen at export (`asl_keras.decoding`; by default
   cached greedy attention decoding: one `WHILE`, member logits averaged every step, stop at
   EOS, at most `LABEL_LEN` steps); a clip shorter than MIN_FRAMES, or with
   `sigmoid(mean confidence) < MIN_CONFIDENCE`, enters the loop finished and gets no
   characters. No conditional surrounds steps 2-4: ops inside an `IF` branch run
   several times slower in LiteRT (docs/tflite.md, pitfall 4);
5. the characters before the first EOS (ids outside the 59-character map are dropped, as
   `vocab.decode` drops them); no character at all -> `DUMMY_PHRASE`. Step 4 produces "no
   character", so this one rule implements the reference's dummy-phrase post-processing and
   also keeps the output at >= 1 row;
6. one-hot rows `[n, 59]`: every row's argmax is a real character, so the output decodes the
   same whether or not a scorer maps unknown ids to "".

`keras_texts` computes the same strings without TFLite (batched preprocessing + greedy decoding
in TF, then `inference.postprocess` in Python): the parity check and `asl_keras.evaluate` compare
the two implementations.

The parity check (`check_parity`) runs on the user's own clips when TFRecords are available
(`choose_clips`): both implementations are scored against the true phrases and the export fails
when the scores differ by more than SCORE_BOUND. A string-by-string rule would fail sound fp16
exports, because near-tie tokens flip on clips unlike the model's data while the score does not
move. Only without records does it fall back to `landmarks.sample_clips` and string
agreement.
`export` writes nothing under a finished name until every check has passed.

Conversion uses `keras.export.ExportArchive` (docs/tflite.md, pitfall 1): a `tf.Module`
around Keras 3 layers would keep unresolved `READ_VARIABLE` ops and silently produce garbage;
the contract check rejects such files anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Sequence

import keras
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from asl_keras import config, landmarks, reference, vocab
from asl_keras.data import pipeline, preprocess, records
from asl_keras.data.convert import INDEX
from asl_keras.decoding import GREEDY_ATTENTION, Decoding, decode, mean_ctc_log_probs
from asl_keras.decoding import resolve as resolve_decoding
from asl_keras.export import submission
from asl_keras.inference import MIN_CONFIDENCE, MIN_FRAMES, postprocess
from asl_keras.models.recognizer import Recognizer, build_recognizer
from asl_keras.runtime import tf
from asl_keras.training.metrics import normalized_total

SIGNATURE, INPUT, OUTPUT = "serving_default", "inputs", "outputs"
# The competition's 40 MB, read as 10^6 bytes: the stricter reading of "MB" (40 MiB would
# allow 41.9e6), so a file that passes here passes under either.
SIZE_LIMIT = 40_000_000
# Stored weights: float32; float16 (dequantised at load, half the size); int8, TFLite's
# dynamic-range quantisation (dense and conv weights as int8 with a scale per output channel,
# computed in int8 against activations quantised on the fly; a quarter of the size).
WEIGHTS = ("fp16", "int8", "fp32")
# `weights="auto"` converts straight to int8 when the fp16 weights alone (2 bytes each) exceed
# the size limit by this factor: the margin covers weights that the converter folds together
# (the fp16 files of full-size cfg_2 ensembles are 2.8 % smaller than 2 bytes a weight), so a
# model that would fit in fp16 is never sent to int8 unconverted; between the limit and the
# margin it converts fp16 and looks at the size.
FP16_MARGIN = 1.1
DEFAULT_CHECK_CLIPS = 64  # clips of the TFLite-vs-Keras check (`--check-clips`)
# The check on the user's records: |TFLite score - Keras score| against the true phrases
# (normalized total Levenshtein), keyed by the weights' precision.
# - fp32 runs the same float32 ops as Keras and decodes identically (the tests compare hundreds
#   of clips string by string), so both scores are the same number; 1e-6 only absorbs rounding.
# - fp16 weights move logits by ~1e-3 of their spread, so near-tie tokens flip on some clips, in
#   either direction for the score. A flip changes at most the rest of its phrase; on 64 clips
#   of ~17 characters each character is worth ~1/1,100 of the score, so 0.005 allows a net ~5
#   characters (about one rewritten phrase ending). A demo-recipe model measured 0.0011 on 500
#   held-out clips of another set; a wrong conversion (weights, layout, preprocessing) changes
#   most strings and moves the score far more. With much fewer clips (`--check-clips 16`) one
#   flip weighs more: keep the default.
# - int8 weights move logits more than fp16 does: more flips, still in both directions. On
#   the hard preset's trained members (380 clips, README "Decoding modes") int8 scored within
#   -0.005..+0.001 of fp16 in every mode; on 64 clips each flip weighs 6x more, hence 4x the
#   fp16 bound.
INT8_SCORE_BOUND = 0.02
SCORE_BOUND = {"fp32": 1e-6, "fp16": 0.005, "int8": INT8_SCORE_BOUND}
# Below this fraction of clips that Keras decodes to something other than DUMMY_PHRASE, both
# implementations mostly print the same constant and equal scores prove nothing.
MIN_DECODED = 0.25
# Without records: normalized total Levenshtein of the TFLite strings against the Keras strings
# on sample clips. fp32 must decode identically. For fp16, 0.998 bounds the score change on
# any labelled set of similar length by ~0.002 (the triangle inequality: |D(t, a) - D(t, b)| <=
# D(a, b)); clips far from a model's data have more near-ties, which is why records are preferred.
# int8 without records: fp16's disagreement allowance x5, as the score bound is loosened x4
# (not measured on a trained model without records).
INT8_PARITY_MIN = 0.99
PARITY_MIN = {"fp32": 1.0, "fp16": 0.998, "int8": INT8_PARITY_MIN}
VARIABLE_OPS = frozenset({"READ_VARIABLE", "VAR_HANDLE", "ASSIGN_VARIABLE"})


class ExportError(RuntimeError):
    """The converted model breaks the submission contract; the message says how."""


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def float32_policy():
    """Build under float32: a mixed-precision model cannot be converted (bf16 KV cache and
    dtype clashes, docs/tflite.md, pitfall 5); its float32 weights load unchanged."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def load_models(cfg: config.Config, checkpoints: Sequence[str]) -> list[Recognizer]:
    """float32 Recognizers of `cfg`, one per checkpoint.

    A `.weights.h5` is a Keras checkpoint (`model.save_weights`; Keras copies a `gs://` or
    `ram://` file to a local temporary file itself). A `.pth`, `.pt` or `.npz` is a 1st-place
    PyTorch state_dict (bare or as its train.py saves it), imported with
    `reference.import_recognizer`: `cfg` must then describe that Squeezeformer (e.g.
    configs/cfg_2_squeezeformer.yaml).
    """
    if not checkpoints:
        raise ValueError("at least one checkpoint is needed")
    unknown = [p for p in checkpoints if not p.endswith(".weights.h5")
               and not p.lower().endswith(reference.CHECKPOINT_SUFFIXES)]
    if unknown:
        raise ValueError(f"{unknown}: expected Keras .weights.h5 files or 1st-place state_dicts "
                         f"({', '.join(reference.CHECKPOINT_SUFFIXES)})")
    models = []
    with float32_policy():
        for path in checkpoints:
            model = build_recognizer(cfg)
            if path.endswith(".weights.h5"):
                model.load_weights(path)
            else:
                reference.import_recognizer(model, reference.load_state_dict(path))
            models.append(model)
    return models


def encode(models: Sequence[Recognizer], x, mask, with_ctc: bool = False):
    """`[B, L, 130, 3]`, `[B, L]` -> (decoding members, mean confidence logit `[B]`, ensemble
    CTC log-probabilities `[B, L, 60]`).

    The confidence is None when the models have no confidence head (cfg_1); the CTC
    log-probabilities are None unless `with_ctc` (`decoding.mean_ctc_log_probs`).
    """
    members, logits, ctc_logits = [], [], []
    for model in models:
        encoded = model.encode(x, mask)
        members.append((model.decoder, encoded, mask))
        if model.confidence_head is not None:
            logits.append(model.confidence(encoded))
        if with_ctc:
            ctc_logits.append(model.ctc_logits(encoded))
    return (members, tf.add_n(logits) / len(logits) if logits else None,
            mean_ctc_log_probs(ctc_logits, mask) if with_ctc else None)


# ---------------------------------------------------------------------------------------------
# The serving graph
# ---------------------------------------------------------------------------------------------


def at_least_one_frame(frames):
    """`[T, F]` -> `[max(T, 1), F]`: a 0-frame input gets one all-NaN (= all missing) frame."""
    missing = tf.maximum(1 - tf.shape(frames)[0], 0)
    return tf.pad(frames, [[0, missing], [0, 0]], constant_values=float("nan"))


def encoder_frames(frames: int, max_len: int):
    """Frames the serving graph encodes for a `frames`-frame clip: its real frames (all of
    `max_len` above it, where preprocessing resamples), and at least MIN_FRAMES.

    The real frames, as the reference's own graph encodes them: an encoder whose output
    depends on padding (the reference's conv module) sees the clip as it was trained to at
    batch size one, and every encoder costs the clip's length, not `max_len`. Clips shorter
    than MIN_FRAMES are never decoded; their padded frames only keep tensors non-empty.
    Works on ints and on int32 tensors.
    """
    return tf.clip_by_value(frames, MIN_FRAMES, max_len) if tf.is_tensor(frames) else (
        min(max(frames, MIN_FRAMES), max_len))


def encoder_inputs(frames, max_len: int):
    """`[T >= 1, F]` frames -> the encoders' inputs `[1, encoder_frames(T), 130, 3]` and mask
    `[1, encoder_frames(T)]`: `preprocess.preprocess`, cut to the frames encoded."""
    x, mask = preprocess.preprocess(frames, max_len)
    real = encoder_frames(tf.shape(frames)[0], max_len)
    return x[None, :real], mask[None, :real]


def _recognise(models, frames, max_len: int, decoding: Decoding):
    """`[T >= 1, F]` frames -> decoder ids `[LABEL_LEN + 1]` (SOS first) of `decoding`, or no
    characters when the clip is shorter than MIN_FRAMES or the ensemble unsure (mean confidence
    below MIN_CONFIDENCE).

    Nothing here is inside a conditional: encoders and decoder always run and the skip is
    the decoding loop's initial state (no step runs), because ops inside an `IF` branch run
    several times slower in LiteRT (docs/tflite.md, pitfall 4).
    """
    x, mask = encoder_inputs(frames, max_len)
    members, confidence, ctc_log_probs = encode(models, x, mask, decoding.needs_ctc)
    skip = tf.shape(frames)[0] < MIN_FRAMES
    if confidence is not None:
        skip = tf.logical_or(skip, tf.sigmoid(confidence[0]) < MIN_CONFIDENCE)
    return decode(decoding, members, ctc_log_probs, finished=skip[None])[0]


def _characters(ids):
    """Decoder ids `[L]` -> character ids `[n >= 1]`: `vocab.decode`'s characters, or those of
    DUMMY_PHRASE when there are none (the dummy-phrase rule)."""
    tokens = ids[1:]
    before_eos = tf.equal(tf.cumsum(tf.cast(tf.equal(tokens, vocab.EOS), tf.int32)), 0)
    chars = tf.boolean_mask(tokens, before_eos & (tokens < vocab.NUM_CHARS))
    chars = tf.cond(tf.size(chars) > 0, lambda: chars,
                    lambda: tf.constant(vocab.encode(vocab.DUMMY_PHRASE)))
    return tf.reshape(chars, [-1])  # the cond loses the rank; the signature should say [n, 59]


def serving_function(models: Sequence[Recognizer], max_len: int,
                     decoding: Decoding = GREEDY_ATTENTION):
    """The `serving_default` function: `inputs [T, F]` -> `{"outputs": [n, 59]}` (module doc)."""
    resolve_decoding(models, decoding)

    def serve(inputs):
        ids = _recognise(models, at_least_one_frame(inputs), max_len, decoding)
        return {OUTPUT: tf.one_hot(_characters(ids), vocab.NUM_CHARS)}

    return serve


def serving_weights(models: Sequence[Recognizer], decoding: Decoding) -> int:
    """How many weights of `models` the serving graph of `decoding` holds: the embedding,
    encoder, decoder and confidence head of each member, and its CTC head for the modes that
    read it (the backward decoder only trains)."""
    def parts(m: Recognizer):
        return (m.embedding, m.encoder, m.decoder, m.confidence_head,
                m.ctc_head if decoding.needs_ctc else None)

    return sum(int(np.prod(w.shape)) for m in models for part in parts(m) if part is not None
               for w in part.weights)


def convert(models: Sequence[Recognizer], max_len: int, weights: str = "fp16",
            decoding: Decoding = GREEDY_ATTENTION) -> bytes:
    """The TFLite flatbuffer of the ensemble's serving function (TFLITE_BUILTINS only), with
    `weights` in WEIGHTS and the decoding mode `decoding`."""
    return convert_function(serving_function(models, max_len, decoding), models, weights)


def convert_function(serve, models: Sequence[Recognizer], weights: str = "fp16") -> bytes:
    """The TFLite flatbuffer of `serve(inputs [T, 390]) -> {name: tensor}` as the
    `serving_default` signature, with the weights of `models` (`convert` passes the serving
    function; the benchmark converts parts of it)."""
    archive = keras.export.ExportArchive()
    for model in models:
        archive.track(model)
    spec = tf.TensorSpec([None, len(landmarks.SELECTED_COLUMNS)], tf.float32, name=INPUT)
    archive.add_endpoint(SIGNATURE, serve, input_signature=[spec])
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if weights not in WEIGHTS:
            raise ValueError(f"weights {weights!r}: expected one of {', '.join(WEIGHTS)}")
        if weights != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if weights == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


# ---------------------------------------------------------------------------------------------
# Running a converted model
# ---------------------------------------------------------------------------------------------


def runner(model, num_threads: int | None = None):
    """`serving_default` signature runner of `model` (flatbuffer bytes or a .tflite path) on the
    LiteRT interpreter, the runtime of the competition scorer.

    LiteRT opens local files only: a path that is not local (`gs://`, `ram://`) is read through
    `tf.io.gfile` and handed over as bytes.
    """
    if not isinstance(model, bytes) and "://" in str(model):
        with tf.io.gfile.GFile(str(model), "rb") as f:
            model = f.read()
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
                batch_size: int = 16, decoding: Decoding = GREEDY_ATTENTION) -> list[str]:
    """Predictions of the ensemble for `[T >= 1, F]` sequences, computed without TFLite.

    Same preprocessing and decoding (`decoding`'s mode; batched: a sample's ids do not depend
    on its batch), then the rules in Python: `inference.postprocess` (short, unsure or empty ->
    DUMMY_PHRASE). An independent implementation of the serving graph's rules, which the
    parity check compares against. The encoders see what the serving graph gives them
    (`encoder_frames`): clips padded to `max_len` when every member is padding-invariant
    (the same outputs, and clips of any length batch together), else each clip's own frames,
    batched with clips of the same length.
    """
    width = len(landmarks.SELECTED_COLUMNS)
    prepare = tf.function(lambda frames: preprocess.preprocess(frames, max_len),
                          input_signature=[tf.TensorSpec([None, width], tf.float32)])

    @tf.function(input_signature=[tf.TensorSpec([None, None, landmarks.NUM_LANDMARKS, 3]),
                                  tf.TensorSpec([None, None])])
    def recognise(x, mask):
        members, confidence, ctc_log_probs = encode(models, x, mask, decoding.needs_ctc)
        return (decode(decoding, members, ctc_log_probs),
                None if confidence is None else tf.sigmoid(confidence))

    invariant = all(m.padding_invariant for m in models)
    sequences = [np.asarray(f, np.float32) for f in sequences]
    groups: dict[int, list[int]] = {}
    for i, frames in enumerate(sequences):
        groups.setdefault(max_len if invariant else encoder_frames(len(frames), max_len),
                          []).append(i)
    texts: dict[int, str] = {}
    for length, members in groups.items():
        for start in range(0, len(members), batch_size):
            batch = members[start:start + batch_size]
            xs, masks = zip(*(prepare(sequences[i]) for i in batch), strict=True)
            ids, confidence = recognise(tf.stack(xs)[:, :length], tf.stack(masks)[:, :length])
            for row, i in enumerate(batch):
                conf = None if confidence is None else float(confidence[row])
                texts[i] = postprocess(vocab.decode(ids[row, 1:].numpy()), len(sequences[i]),
                                       conf)
    return [texts[i] for i in range(len(sequences))]


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


def subgraph_operators(model: bytes) -> dict[str, int]:
    """Operator count of every subgraph of the flatbuffer, by subgraph name (`main`, the
    branches of each `IF`, the `while_cond`/`while_body` of each `WHILE`)."""
    root = schema.Model.GetRootAs(model, 0)
    return {root.Subgraphs(i).Name().decode(): root.Subgraphs(i).OperatorsLength()
            for i in range(root.SubgraphsLength())}


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
                        f"limit of {size_limit / 1e3:,.0f} kB: use fp16 or int8 weights "
                        "(--weights), fewer checkpoints or a smaller model")
    if problems:
        raise ExportError("the converted model breaks the submission contract:\n  "
                          + "\n  ".join(problems))
    return ops


def interleaved_latencies_ms(runners: dict, clips: dict,
                             repeats: int) -> tuple[dict[object, np.ndarray], dict[object, int]]:
    """Time every runner on its clip (`clips[key]`, frames `[T, 390]`), taking turns, for
    `repeats` rounds, so that all of them see the same machine load. One untimed call each
    comes first (it allocates). Returns the milliseconds of each timed call and the output rows
    of each runner, both by key."""
    rows = {k: run(**{INPUT: clips[k]})[OUTPUT].shape[0] for k, run in runners.items()}
    times = {k: [] for k in runners}
    for _ in range(repeats):
        for k, run in runners.items():
            start = time.perf_counter()
            run(**{INPUT: clips[k]})
            times[k].append(1000 * (time.perf_counter() - start))
    return {k: np.asarray(v) for k, v in times.items()}, rows


def clip_latencies_ms(signature_runner, frames: int, repeats: int) -> np.ndarray:
    """Milliseconds of each of `repeats` calls on a `frames`-frame sample clip (after an
    untimed first call)."""
    clip = landmarks.sample_clips(1, seed=0)[0]
    x = np.resize(clip, (frames, clip.shape[1])).astype("float32")
    return interleaved_latencies_ms({0: signature_runner}, {0: x}, repeats)[0][0]


@dataclasses.dataclass(frozen=True)
class CheckClips:
    """Clips of the parity check: frames `[T, 390]` as the serving input takes them, their true
    phrases (None for sample clips, which only compare TFLite with Keras) and where they
    come from."""

    source: str
    frames: list[np.ndarray]
    phrases: list[str] | None = None


def record_clips(records_dir: str, fold: int, count: int) -> CheckClips:
    """The first `count` competition-train clips of a TFRecords conversion, in index order.

    Clips of the held-out fold `fold`, or of every fold when `fold` is -1 (a fullfit holds none
    out). Records store the raw frames in SELECTED_COLUMNS order with NaN kept (records.py),
    which is the serving graph's input as `inference_args.json` describes it, so they are used
    as stored. Index order keeps the clips in few shards: only those are read, each until its
    clips are found.
    """
    index = pipeline.read_index(records_dir)
    rows = index[index["is_supplemental"] == 0]
    if fold >= 0:
        rows = rows[rows["fold"] == fold]
    rows = rows.head(count)
    which = f"held-out fold {fold}" if fold >= 0 else "all folds: data.fold is -1"
    if rows.empty:
        raise ExportError(f"{records_dir} holds no competition-train clips ({which}) to check "
                          "the export on; give other --records, or --check-clips 0 to skip")
    found = {}
    for shard, group in rows.groupby("shard", sort=False):
        wanted = set(group["sequence_id"].tolist())
        for record in records.read_shard(f"{records_dir.rstrip('/')}/{shard}"):
            if record["sequence_id"] in wanted:
                found[record["sequence_id"]] = record
                if wanted <= found.keys():
                    break
    missing = sorted(set(rows["sequence_id"].tolist()) - found.keys())
    if missing:
        raise ExportError(f"{records_dir}: {INDEX} lists sequences missing from their shards, "
                          f"e.g. {missing[:3]}")
    chosen = [found[i] for i in rows["sequence_id"].tolist()]
    return CheckClips(f"{records_dir} ({which})", [r["frames"] for r in chosen],
                      [r["phrase"] for r in chosen])


def choose_clips(data: config.Data, records_dir: str | None, count: int) -> CheckClips | None:
    """The parity check's clips: from `records_dir` if given, else from `data.records` if that
    holds a conversion (`record_clips` with `data.fold`), else `count` clips of
    `landmarks.sample_clips`; None when `count` is 0 (no check)."""
    if count == 0:
        return None
    if records_dir is None and tf.io.gfile.exists(f"{data.records.rstrip('/')}/{INDEX}"):
        records_dir = data.records
    if records_dir is None:
        return CheckClips("sample", landmarks.sample_clips(count))
    if not tf.io.gfile.exists(f"{records_dir.rstrip('/')}/{INDEX}"):
        raise ExportError(f"{records_dir} has no {INDEX}: not a TFRecords conversion (python -m "
                          "asl_keras.data.convert makes one)")
    return record_clips(records_dir, data.fold, count)


@dataclasses.dataclass(frozen=True)
class ParityCheck:
    """What the TFLite-vs-Keras check ran on and measured.

    `agreement`: normalized total Levenshtein of the TFLite strings against the Keras strings;
    `decoded`: fraction of clips Keras decodes to something other than DUMMY_PHRASE; scores
    against the true phrases (records only, else None); `limit`: the bound applied
    (SCORE_BOUND with records, PARITY_MIN without).
    """

    source: str
    clips: int
    agreement: float
    decoded: float
    limit: float
    keras_score: float | None = None
    tflite_score: float | None = None

    @property
    def difference(self) -> float | None:
        """TFLite score - Keras score (None on sample clips)."""
        if self.keras_score is None:
            return None
        return self.tflite_score - self.keras_score

    def summary(self) -> str:
        decoded = f"{self.decoded:.0%} of clips decoded to other than the dummy phrase"
        if self.keras_score is None:
            return (f"check on {self.clips} sample clips (no records): agreement with Keras "
                    f"{self.agreement:.4f} (minimum {self.limit}), {decoded}")
        return (f"check on {self.clips} clips of {self.source}: score keras "
                f"{self.keras_score:.4f}, tflite {self.tflite_score:.4f}, difference "
                f"{self.difference:+.4f} (bound {self.limit:g}), {decoded}; strings agree "
                f"{self.agreement:.4f}")


def check_parity(model: bytes, models: Sequence[Recognizer], max_len: int, clips: CheckClips,
                 weights: str, decoding: Decoding = GREEDY_ATTENTION) -> ParityCheck:
    """Run TFLite and Keras on `clips`; ExportError unless they match (module docstring).

    With true phrases: fails when fewer than MIN_DECODED of the clips decode to something other
    than DUMMY_PHRASE (too weak a model to judge) or when the scores differ by more than
    SCORE_BOUND. Sample clips: fails when the agreement is below PARITY_MIN.
    """
    run = runner(model)
    lite = [tflite_text(run, f) for f in clips.frames]
    keras_ = keras_texts(models, max_len, clips.frames, decoding=decoding)
    differ = [(k, t) for k, t in zip(keras_, lite, strict=True) if k != t]
    first = f"first: Keras {differ[0][0]!r}, TFLite {differ[0][1]!r}" if differ else ""
    decoded = float(np.mean([t != vocab.DUMMY_PHRASE for t in keras_]))
    agreement = normalized_total(keras_, lite)
    n = len(clips.frames)
    if clips.phrases is None:
        if agreement < PARITY_MIN[weights]:
            raise ExportError(f"TFLite and Keras disagree on {len(differ)}/{n} sample sequences "
                              f"(agreement {agreement:.4f} < {PARITY_MIN[weights]}); {first}")
        return ParityCheck(clips.source, n, agreement, decoded, PARITY_MIN[weights])
    if decoded < MIN_DECODED:
        raise ExportError(f"only {decoded:.0%} of the {n} clips of {clips.source} decode to "
                          f"something other than the dummy phrase {vocab.DUMMY_PHRASE!r} (at "
                          f"least {MIN_DECODED:.0%} needed): the model is too weak to judge "
                          "TFLite against Keras on them. Train it further, check on other "
                          "--records, or skip the check with --check-clips 0")
    result = ParityCheck(clips.source, n, agreement, decoded, SCORE_BOUND[weights],
                         normalized_total(clips.phrases, keras_),
                         normalized_total(clips.phrases, lite))
    if abs(result.difference) > SCORE_BOUND[weights]:
        raise ExportError(f"on {n} clips of {clips.source}, TFLite scores "
                          f"{result.tflite_score:.4f} and Keras {result.keras_score:.4f} against "
                          f"the true phrases: the difference {result.difference:+.4f} exceeds "
                          f"{SCORE_BOUND[weights]:g} ({weights} weights); "
                          f"{len(differ)} clips decode differently, {first}")
    return result


# ---------------------------------------------------------------------------------------------
# The whole export
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExportResult:
    """What `export` wrote and measured."""

    model_path: str
    size_bytes: int
    weights: str
    decoding: Decoding
    convert_seconds: float
    ops: list[str]
    check: ParityCheck | None  # None when the parity check was skipped (0 clips)
    submission_path: str | None

    def summary(self) -> str:
        lines = [f"{self.model_path}: {self.size_bytes / 1e3:,.0f} kB "
                 f"({self.weights} weights, {self.decoding.describe()} decoding), converted in "
                 f"{self.convert_seconds:.0f} s",
                 f"ops ({len(self.ops)}, builtin only): {' '.join(self.ops)}",
                 "parity with Keras: "
                 + ("not run (--check-clips 0)" if self.check is None else self.check.summary())]
        if self.submission_path:
            lines.append(f"submission: {self.submission_path}")
        return "\n".join(lines)


def export(config_path: str, checkpoints: Sequence[str], out_dir: str, weights: str = "auto",
           make_submission: bool = False, check_clips: int = DEFAULT_CHECK_CLIPS,
           records_dir: str | None = None, size_limit: int | None = None,
           decoding: Decoding | None = None) -> ExportResult:
    """Checkpoints of `config_path` -> `out_dir/model.tflite` + `inference_args.json`
    (+ `submission.zip`), contract and parity checked; `size_limit` defaults to SIZE_LIMIT.
    `weights` in WEIGHTS, or `auto`: fp16, and int8 when the fp16 file is over the size limit
    (the README's recommended 3-member cfg_2 ensemble; converted to int8 directly when the fp16
    weights alone are over it by FP16_MARGIN); `decoding` the mode built into the graph
    (`asl_keras.decoding`; None: `decoding.resolve`'s default).

    The parity check runs on `check_clips` clips (`choose_clips`: of `records_dir`, else of the
    config's `data.records`, else sample clips; 0 skips it). The checks run on the converted model
    in memory and the files are written only when all pass, so a failed export (ExportError)
    writes nothing in `out_dir` but `model.FAILED.tflite`, for inspection; files of an earlier
    export stay as they were. Every path goes through `tf.io.gfile` (`gs://`, `ram://`).
    """
    cfg = config.load(config_path)
    models = load_models(cfg, checkpoints)
    clips = choose_clips(cfg.data, records_dir, check_clips)  # bad records fail before converting
    decoding = resolve_decoding(models, decoding)
    size_limit = SIZE_LIMIT if size_limit is None else size_limit
    start = time.perf_counter()
    auto = weights == "auto"
    if auto:  # int8 quarters the weights where fp16 halves them
        fp16_too_big = 2 * serving_weights(models, decoding) > FP16_MARGIN * size_limit
        weights = "int8" if fp16_too_big else "fp16"
    model = convert(models, cfg.data.max_len, weights, decoding)
    if auto and weights == "fp16" and len(model) > size_limit:
        weights = "int8"
        model = convert(models, cfg.data.max_len, weights, decoding)
    seconds = time.perf_counter() - start
    try:
        ops = check_contract(model, size_limit)
        check = (check_parity(model, models, cfg.data.max_len, clips, weights, decoding)
                 if clips else None)
    except ExportError as err:
        failed = submission.write_failed(out_dir, model)
        raise ExportError(f"{err}\nno {submission.MODEL_FILE} was written; the converted model "
                          f"is in {failed} for inspection") from err
    model_path, zip_path = submission.write_package(out_dir, model, make_submission)
    return ExportResult(model_path, len(model), weights, decoding, seconds, sorted(ops), check,
                        zip_path)
