"""int8 ONNX models: static quantisation calibrated on images as inference sees them, and an accuracy gate.

`jaxpose export --int8` writes, beside the float model `model.onnx`, a
statically quantised `model.int8.onnx` (`int8_path`), and keeps it only if
its people agree with the float model's on check images:

1. Calibration (`CalibrationReader`): each calibration image goes through
   `approach.predict` with the float model, as `jaxpose infer` runs it, and
   the batches the approach feeds the network are recorded
   (`network_inputs`): bottom-up, the image letterboxed to the model's fixed
   input size; top-down, the whole image as one person box through the
   protocol's crop, and its mirror image for the flip test. Each batch is
   fed as `OnnxPredictor.feed` feeds it (float32 RGB pixels 0..255, NHWC or
   NCHW as the file's input), so that the activation ranges are those
   inference meets.
2. Quantisation (`quantize_model`): onnxruntime's `quant_pre_process`, then
   `quantize_static` with QDQ nodes, per-channel int8 weights, uint8
   activations and MinMax ranges. The pre-processing folds each
   BatchNormalization into its Conv and removes the graph's layout
   Transposes; without it quantize_static puts QDQ pairs between Conv and
   BatchNormalization, which onnxruntime then cannot fuse into int8 convs
   (Lightweight OpenPose at 368x368 on 2 cores: 1.2x faster than float
   instead of 2.1x; BENCHMARKS.md). uint8 activations, not int8: the u8 x
   s8 products are the ones x86's VNNI (and its older AVX2 path) compute
   natively; s8 activations ran at 1.35x.
3. The gate (`compare`, `keypoint_agreement`): both models predict the
   check images (the same options, and for a top-down model the same
   whole-image boxes); the agreement is the share of keypoints the float
   model finds (scored above `FOUND_SCORE`, 0.2) whose int8 counterpart
   lies within a tolerance, the people of the two outputs matched one to
   one so that the most keypoints agree (`image_agreement`). By default the tolerance is one
   heatmap cell of the model as it lies on each image (`heatmap_cell`): the
   output stride (8 input pixels for the OpenPose models, 4 for the
   hourglass) times the image pixels per input pixel.
"""

from collections.abc import Iterator, Sequence
import dataclasses
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import onnx

from jaxpose import approaches, files
from jaxpose.data import geometry
from jaxpose.deploy import export
from jaxpose.deploy import predictor as predictor_lib
from jaxpose.metrics import oks

INT8_SUFFIX = '.int8.onnx'
DEFAULT_MIN_AGREEMENT = 0.9
# A reference keypoint scored at or below this is not compared: the score
# below which drawing and person boxes treat a keypoint as absent. (A
# top-down model places every joint somewhere; its low-scored guesses are
# noise that any rounding moves.)
FOUND_SCORE = oks.DEFAULT_SCORE_THRESHOLD


class AgreementError(ValueError):
  """The int8 model's people disagree with the float model's, or agreement cannot be measured."""


def int8_path(float_path: str | os.PathLike) -> str:
  """`model.onnx` -> `model.int8.onnx`, beside it (a name without .onnx gets the suffix appended)."""
  path = os.fspath(float_path)
  stem = path[:-len('.onnx')] if path.endswith('.onnx') else path
  return stem + INT8_SUFFIX


def check_quantizable(model_config: dict[str, Any]) -> None:
  """ValueError unless the described model can be calibrated one image at a time (not the recurrent STAF)."""
  approach = approaches.for_description(model_config)
  if approach.export_signature(approach.default_input_size).feedback:
    raise ValueError(f'--int8: {model_config["arch"]!r} is recurrent (each frame also takes the '
                     "previous frame's maps), which int8 calibration and its check on single "
                     'images do not support; export it without --int8')


# --- what inference feeds the network ---------------------------------------------


def whole_image_boxes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, 3] -> (boxes [1, 4] (x, y, w, h) covering it, scores [1] of 1): a top-down model's one person."""
  height, width = image.shape[:2]
  return np.array([[0.0, 0.0, width, height]], np.float32), np.ones(1, np.float32)


def predict_image(network, image: np.ndarray,
                  options: approaches.Options = approaches.Options()) -> approaches.People:
  """One RGB image [H, W, 3] uint8 -> its People, by `network`'s approach (top-down: the whole image as the box)."""
  approach = network.approach
  boxes = [whole_image_boxes(image)] if approach.per_person else None
  return approach.predict(network, [image], options, boxes)[0]


class _RecordingNetwork:
  """A predictor that keeps the batches it is given and adds up the seconds its calls take.

  Everything else (`approach`, `input_size`, `input_multiple`, `source`) is
  the wrapped predictor's, so that an approach runs it as it runs the model.
  """

  def __init__(self, network, keep_inputs: bool = True):
    self.network = network
    self.keep_inputs = keep_inputs
    self.inputs: list[np.ndarray] = []
    self.seconds = 0.0

  def __getattr__(self, name: str):
    return getattr(self.network, name)

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    if self.keep_inputs:
      self.inputs.append(np.array(images, np.uint8))
    start = time.perf_counter()
    outputs = self.network(images)
    self.seconds += time.perf_counter() - start
    return outputs


def network_inputs(network, image: np.ndarray,
                   options: approaches.Options = approaches.Options()) -> list[np.ndarray]:
  """One RGB image [H, W, 3] -> the uint8 batches [B, h, w, 3] that `predict_image` feeds `network` for it, in order."""
  recorder = _RecordingNetwork(network)
  predict_image(recorder, image, options)
  return recorder.inputs


class CalibrationReader:
  """onnxruntime's CalibrationDataReader over images, fed as inference feeds the float model.

  `get_next` gives one feed ({'images': float32 [B, H, W, 3], or NCHW})
  per network call that `predict_image` makes on each image (one per image
  bottom-up; the crop and its mirror image top-down), then None. The
  images are read and run one at a time, so memory does not grow with
  their number.
  """

  def __init__(self, network: predictor_lib.OnnxPredictor, images,
               options: approaches.Options = approaches.Options()):
    """`network`: the float model; `images`: a re-iterable of RGB images [H, W, 3] or of `Frame`s."""
    self.network = network
    self.images = images
    self.options = options
    self.rewind()

  def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
    for image in self.images:
      for batch in network_inputs(self.network, getattr(image, 'image', image), self.options):
        yield self.network.feed(batch)

  def get_next(self) -> dict[str, np.ndarray] | None:
    return next(self._iterator, None)

  def rewind(self) -> None:
    self._iterator = self._feeds()

  # onnxruntime's CalibrationDataReader is also an iterator (its debugging
  # tools, `qdq_loss_debug.collect_activations`, iterate it).
  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)


# --- quantisation -------------------------------------------------------------------


def _quiet_quantization():
  """Silences onnxruntime.quantization's warnings on the root logger (advice, shapes it skips)."""
  return export.quiet_logger()


def _remove_unused_initializers(graph: onnx.GraphProto) -> None:
  """Drops the initializers that no node of `graph` reads."""
  used = {name for node in graph.node for name in node.input}
  unused = [tensor for tensor in graph.initializer if tensor.name not in used]
  for tensor in unused:
    graph.initializer.remove(tensor)


def prepare_model(float_path: str | os.PathLike, out_path: str | os.PathLike) -> str:
  """Writes `float_path` as quantize_static takes it best to `out_path`: onnxruntime's `quant_pre_process`; -> `out_path`.

  The pre-processing folds each BatchNormalization that follows a Conv into
  it and removes the layout Transposes (see the module docstring).
  """
  from onnxruntime.quantization import shape_inference  # pylint: disable=g-import-not-at-top
  out_path = os.fspath(out_path)
  with tempfile.TemporaryDirectory(prefix='jaxpose-int8-') as scratch, _quiet_quantization():
    # Initializers that no node reads (the shape constants of the
    # upsampling that `export.upsampling_as_resize` rewrote) would each get
    # a warning from the pre-processing's onnxruntime session, on stderr.
    model = onnx.load(os.fspath(float_path))
    _remove_unused_initializers(model.graph)
    source = os.path.join(scratch, 'float.onnx')
    onnx.save_model(model, source)
    # Symbolic shape inference gives up on the hourglass's Resize nodes;
    # onnx's own inference knows every shape (only the batch is symbolic).
    shape_inference.quant_pre_process(source, out_path, skip_symbolic_shape=True)
  return out_path


def quantize_model(float_path: str | os.PathLike, out_path: str | os.PathLike,
                   calibration: CalibrationReader) -> str:
  """Writes the statically quantised `float_path` to `out_path` (QDQ, per-channel int8 weights, uint8 activations); -> `out_path`.

  `float_path` is a `jaxpose export` file; `calibration` gives the feeds
  whose activation ranges (min and max) set the scales. The model
  description (`DESCRIPTION_KEY` metadata) and the input and output names
  are kept, so `OnnxPredictor` runs the result as it runs the float file.
  """
  # Imported here: onnxruntime.quantization pulls in its own dependencies,
  # which only --int8 needs.
  from onnxruntime import quantization  # pylint: disable=g-import-not-at-top
  out_path = os.fspath(out_path)
  with tempfile.TemporaryDirectory(prefix='jaxpose-int8-') as scratch:
    prepared = prepare_model(float_path, os.path.join(scratch, 'prepared.onnx'))
    with _quiet_quantization():
      quantization.quantize_static(
          prepared, out_path, calibration, quant_format=quantization.QuantFormat.QDQ,
          per_channel=True, weight_type=quantization.QuantType.QInt8,
          activation_type=quantization.QuantType.QUInt8,
          calibrate_method=quantization.CalibrationMethod.MinMax)
  # The pre-processing's optimiser drops the metadata: the description is
  # what tells a runtime the keypoint layout.
  metadata = {p.key: p.value for p in onnx.load(os.fspath(float_path),
                                                 load_external_data=False).metadata_props}
  model = onnx.load(out_path)
  onnx.helper.set_model_props(model, metadata)
  onnx.save_model(model, out_path)
  return out_path


# --- agreement ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Agreement:
  """Of `compared` keypoints the reference model found, `agreed` have a counterpart within the tolerance."""
  agreed: int
  compared: int

  def __add__(self, other: 'Agreement') -> 'Agreement':
    return Agreement(self.agreed + other.agreed, self.compared + other.compared)

  @property
  def share(self) -> float | None:
    """agreed / compared; None when nothing was compared."""
    return self.agreed / self.compared if self.compared else None


def image_agreement(reference_keypoints: np.ndarray, reference_scores: np.ndarray,
                    candidate_keypoints: np.ndarray, candidate_scores: np.ndarray,
                    tolerance: float, min_score: float = FOUND_SCORE) -> Agreement:
  """One image's people, reference [P, J, 2] and [P, J], candidate [Q, J, 2] and [Q, J] -> their `Agreement`.

  Every keypoint the reference finds (scored above `min_score`) is
  compared: it agrees when the candidate person matched to its person has
  the same keypoint (scored above 0: a keypoint at the threshold is not
  missed) within `tolerance` pixels (Euclidean, inclusive). People are
  matched one to one (`linear_sum_assignment`) so that the most keypoints
  agree; a reference person left without a match (the candidate found
  fewer people) agrees on none. Candidate people or keypoints the
  reference lacks are not counted: the gate asks whether the int8 model
  keeps what the float model finds.
  """
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  reference_keypoints = np.asarray(reference_keypoints, np.float64)
  candidate_keypoints = np.asarray(candidate_keypoints, np.float64)
  reference_found = np.asarray(reference_scores) > min_score
  candidate_found = np.asarray(candidate_scores) > 0
  compared = int(reference_found.sum())
  if not compared or not len(candidate_keypoints):
    return Agreement(0, compared)
  if reference_keypoints.shape[1:] != candidate_keypoints.shape[1:]:
    raise ValueError(f'agreement: people of {reference_keypoints.shape[1]} and '
                     f'{candidate_keypoints.shape[1]} keypoints cannot be compared')
  # [P, Q, J] distances between each reference and candidate person's keypoints.
  distances = np.linalg.norm(reference_keypoints[:, None] - candidate_keypoints[None], axis=-1)
  close = (distances <= tolerance) & reference_found[:, None] & candidate_found[None]
  counts = close.sum(-1)
  rows, columns = optimize.linear_sum_assignment(counts, maximize=True)
  return Agreement(int(counts[rows, columns].sum()), compared)


def keypoint_agreement(reference: Sequence[approaches.People],
                       candidate: Sequence[approaches.People],
                       tolerances: Sequence[float] | float,
                       min_score: float = FOUND_SCORE) -> Agreement:
  """Each image's People by two models, tolerances (pixels, one per image or one for all) -> the summed `Agreement` (`image_agreement`)."""
  if len(reference) != len(candidate):
    raise ValueError(f'agreement: {len(reference)} images of reference people, '
                     f'{len(candidate)} of candidate people')
  tolerances = np.broadcast_to(np.asarray(tolerances, np.float64), (len(reference),))
  total = Agreement(0, 0)
  for ours, theirs, tolerance in zip(reference, candidate, tolerances):
    total += image_agreement(ours.keypoints, ours.keypoint_scores, theirs.keypoints,
                             theirs.keypoint_scores, float(tolerance), min_score)
  return total


def heatmap_cell(approach: approaches.Approach, image_shape: Sequence[int],
                 input_size: tuple[int, int]) -> float:
  """One heatmap cell of the model, in pixels of an image of `image_shape` ([H, W, ...]) at `input_size` (width, height).

  The output stride (input pixels per heatmap pixel) times the image pixels
  per input pixel: bottom-up, the image letterboxed into the input (scaled
  to fit inside it); top-down, the whole-image box enlarged to the crop
  (`geometry.box_to_center_scale`).
  """
  height, width = image_shape[:2]
  input_width, input_height = input_size
  if approach.per_person:
    _, size = geometry.box_to_center_scale(whole_image_boxes(np.zeros((height, width)))[0][0],
                                           input_width / input_height)
    return float(approach.stride * size[0] / input_width)
  return float(approach.stride * max(width / input_width, height / input_height))


# --- the check and the gate -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Comparison:
  """The int8 model against the float model on check images.

  Attributes:
    agreement: the keypoints compared and those that agree, over the images.
    images: how many check images.
    float_ms, int8_ms: median over the images of the milliseconds the model
      ran on each (its network calls: onnxruntime and the feed's conversion).
    tolerance: pixels, or None for one heatmap cell per image.
  """
  agreement: Agreement
  images: int
  float_ms: float
  int8_ms: float
  tolerance: float | None


def compare(float_model: predictor_lib.OnnxPredictor, int8_model: predictor_lib.OnnxPredictor,
            images, options: approaches.Options = approaches.Options(),
            tolerance: float | None = None) -> Comparison:
  """Both models' people on `images` (RGB [H, W, 3] or `Frame`s) -> their `Comparison`.

  The models take turns image by image, after one warm-up call each, so
  that both latencies are measured under the same load. `tolerance`:
  pixels; None for one heatmap cell (`heatmap_cell`).
  """
  reference, candidate, tolerances = [], [], []
  float_seconds, int8_seconds = [], []
  recorders = {name: _RecordingNetwork(model, keep_inputs=False)
               for name, model in (('float', float_model), ('int8', int8_model))}
  for index, image in enumerate(images):
    image = getattr(image, 'image', image)
    if index == 0:  # onnxruntime's first run allocates and plans; not timed
      for recorder in recorders.values():
        predict_image(recorder.network, image, options)
    for name, recorder in recorders.items():
      recorder.seconds = 0.0
      people = predict_image(recorder, image, options)
      (reference if name == 'float' else candidate).append(people)
      (float_seconds if name == 'float' else int8_seconds).append(recorder.seconds)
    tolerances.append(tolerance if tolerance is not None else
                      heatmap_cell(float_model.approach, image.shape, float_model.input_size))
  return Comparison(keypoint_agreement(reference, candidate, tolerances), len(reference),
                    1e3 * statistics.median(float_seconds), 1e3 * statistics.median(int8_seconds),
                    tolerance)


def export_int8(float_path: str | os.PathLike, calibration_images, check_images,
                min_agreement: float = DEFAULT_MIN_AGREEMENT, tolerance: float | None = None,
                options: approaches.Options = approaches.Options(),
                out_path: str | os.PathLike | None = None) -> dict[str, Any]:
  """Quantises a `jaxpose export` file and keeps the result only if it passes the gate; -> its summary.

  Args:
    float_path: the float model.
    calibration_images: a re-iterable of RGB images [H, W, 3] uint8 or of
      `frame_sources.Frame`s (e.g. an `image_folder`), with `source` naming
      them in messages if it has one.
    check_images: the same, for the agreement (may be the calibration images).
    min_agreement: the least share of agreeing keypoints that passes.
    tolerance: pixels of the check images; None: one heatmap cell.
    options: how both models predict (the approach's defaults otherwise).
    out_path: where the int8 model goes; default `int8_path(float_path)`.

  Returns:
    {out, bytes, agreement, keypoints_compared, check_images,
    calibration_images, float_ms, int8_ms, tolerance}.

  Raises:
    AgreementError: the float model finds no keypoint on the check images,
      or the agreement is below `min_agreement`; nothing is written at
      `out_path` then (the file is written under a temporary name, renamed
      only once it passes).
  """
  float_path = os.fspath(float_path)
  out_path = os.fspath(out_path if out_path is not None else int8_path(float_path))
  float_model = predictor_lib.OnnxPredictor(float_path)
  with files.replacing(out_path) as temporary:
    calibration = CalibrationReader(float_model, calibration_images, options)
    quantize_model(float_path, temporary, calibration)
    int8_model = predictor_lib.OnnxPredictor(str(temporary))
    result = compare(float_model, int8_model, check_images, options, tolerance)
    check_folder = getattr(check_images, 'source', 'the check images')
    share = result.agreement.share
    if share is None:
      raise AgreementError(
          f'int8 agreement cannot be measured: the float model {float_path} finds no keypoint '
          f'on the {result.images} check image(s) in {check_folder} (give --int8_check images '
          f'with people); {out_path} was not written, the float model is at {float_path}')
    if share < min_agreement:
      raise AgreementError(
          f'int8 agreement {share:.3f} < --int8_min_agreement {min_agreement:g} '
          f'({result.agreement.agreed} of {result.agreement.compared} keypoints within '
          f'{_tolerance_text(tolerance)}) on {result.images} check image(s) in {check_folder}; '
          f'{out_path} was not written, the float model is at {float_path}')
  return {'out': out_path, 'bytes': os.path.getsize(out_path), 'agreement': share,
          'keypoints_compared': result.agreement.compared, 'check_images': result.images,
          'calibration_images': _count(calibration_images), 'float_ms': result.float_ms,
          'int8_ms': result.int8_ms,
          'tolerance': tolerance if tolerance is not None else 'heatmap cell'}


def _tolerance_text(tolerance: float | None) -> str:
  return 'one heatmap cell' if tolerance is None else f'{tolerance:g} px'


def _count(images) -> int:
  return len(images) if hasattr(images, '__len__') else sum(1 for _ in images)
