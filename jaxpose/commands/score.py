"""`jaxpose score --coco_annotations A --results R`: COCO keypoint AP of a results file (pycocotools).

Prints pycocotools' table on stderr, then the ten metrics as one JSON object
on the last line of stdout.
"""

from absl import flags

from jaxpose.metrics import coco_ap


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string('coco_annotations', None,
                      'COCO person_keypoints JSON, e.g. person_keypoints_val2017.json',
                      flag_values=flag_values)
  flags.DEFINE_string('results', None,
                      'Results JSON: a list of {image_id, category_id, keypoints, score}',
                      flag_values=flag_values)
  flags.mark_flags_as_required(['coco_annotations', 'results'], flag_values=flag_values)


def main(flag_values: flags.FlagValues) -> dict:
  return coco_ap.score_results_file(flag_values.coco_annotations, flag_values.results)
