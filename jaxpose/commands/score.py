"""`jaxpose score --coco_annotations A --results R [--sigmas a,b,...]`: COCO keypoint AP of a results file (pycocotools), any layout.

Prints pycocotools' table on stderr, then the ten metrics as one JSON object
on the last line of stdout.
"""

from absl import flags

from jaxpose.commands import UsageError
from jaxpose.metrics import coco_ap


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string('coco_annotations', None,
                      'COCO person_keypoints JSON, e.g. person_keypoints_val2017.json',
                      flag_values=flag_values)
  flags.DEFINE_string('results', None,
                      'Results JSON: a list of {image_id, category_id, keypoints, score}',
                      flag_values=flag_values)
  flags.DEFINE_list('sigmas', None, "OKS sigmas, one per keypoint of the annotations' layout "
                    "(default: pycocotools' for COCO's 17 person keypoints; for another layout "
                    "COCO's where a keypoint is a COCO keypoint, else 0.025).",
                    flag_values=flag_values)
  flags.mark_flags_as_required(['coco_annotations', 'results'], flag_values=flag_values)


def parse_sigmas(values: list[str] | None) -> tuple[float, ...] | None:
  """--sigmas -> numbers (None if not given); UsageError naming the flag otherwise."""
  if values is None:
    return None
  try:
    return tuple(float(value) for value in values)
  except ValueError:
    raise UsageError(f'--sigmas: expected numbers, got {",".join(values)}') from None


def main(flag_values: flags.FlagValues) -> dict:
  return coco_ap.score_results_file(flag_values.coco_annotations, flag_values.results,
                                    sigmas=parse_sigmas(flag_values.sigmas))
