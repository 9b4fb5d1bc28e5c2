"""The `jaxpose` command: `jaxpose train|sweep|eval|convert|export|infer|demo ...`.

Each subcommand is a thin wrapper: it parses flags, calls the library, and
reports errors as one line naming the file and what was wrong.
"""

import argparse
import pathlib
import sys

import jax

from jaxpose import export, infer, models

# The COCO sample that ships with the repository (tests/data).
_DEFAULT_COCO_DIR = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'coco'


def _convert(args: argparse.Namespace) -> None:
  """PyTorch checkpoint -> Orbax workdir."""
  from jaxpose import checkpoint, convert  # pylint: disable=g-import-not-at-top
  if args.arch == 'hourglass':
    config = {'arch': 'hourglass', 'num_stacks': args.num_stacks,
              'num_blocks': args.num_blocks, 'num_joints': args.num_joints}
  else:
    config = {'arch': args.arch, 'num_refinement_stages': args.num_refinement_stages}
  input_shape = (1, 256, 256, 3)  # any size both models accept
  model = models.create_model(config)
  state_dict = convert.load_torch_checkpoint(args.checkpoint)
  try:
    variables = convert.variables_from_torch(model, state_dict, input_shape=input_shape)
  except convert.CheckpointMismatchError as e:
    raise SystemExit(f'jaxpose convert: {args.checkpoint}: {e}') from None
  path = checkpoint.save_variables(args.out, variables, models.model_config(model))
  num_params = sum(v.size for v in jax.tree_util.tree_leaves(variables['params']))
  print(f'{args.checkpoint} -> {path} ({args.arch}, {num_params:,} parameters)')


def _demo(args: argparse.Namespace) -> None:
  from jaxpose import demo  # pylint: disable=g-import-not-at-top
  demo.run(args.out, pathlib.Path(args.data))


def _infer(args: argparse.Namespace) -> None:
  infer.run(args)


def _export(args: argparse.Namespace) -> None:
  from jaxpose import export  # pylint: disable=g-import-not-at-top
  export.run_export(args)


def _eval_results(args: argparse.Namespace) -> None:
  """COCO keypoint AP of an existing results file; the metrics are the last line, as JSON."""
  from jaxpose import evaluate  # pylint: disable=g-import-not-at-top
  evaluate.run_coco_eval(args.coco_annotations, args.results)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='jaxpose', description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest='command', required=True)
  for name, text in (('train', 'train a model: --config configs/X.py --workdir DIR'),
                     ('sweep', 'run a sweep: --config configs/sweeps/X.py --workdir DIR')):
    commands.add_parser(name, help=text, add_help=False)  # parsed by absl (jaxpose/main.py)

  convert = commands.add_parser(
      'convert', help='PyTorch checkpoint -> Orbax checkpoint',
      description='Convert a bearpaw/pytorch-pose HourglassNet or a Lightweight '
      'OpenPose checkpoint into a jaxpose workdir (Orbax).')
  convert.add_argument('--arch', required=True, choices=sorted(models.ARCHITECTURES))
  convert.add_argument('--checkpoint', required=True, help='.pth / .pth.tar file')
  convert.add_argument('--out', required=True, help='workdir to write')
  convert.add_argument('--num-stacks', type=int, default=2, help='hourglass stacks')
  convert.add_argument('--num-blocks', type=int, default=1, help='hourglass blocks')
  convert.add_argument('--num-joints', type=int, default=16, help='hourglass output joints')
  convert.add_argument('--num-refinement-stages', type=int, default=1,
                       help='Lightweight OpenPose refinement stages')
  convert.set_defaults(run=_convert)

  export_parser = commands.add_parser(
      'export', help='Orbax checkpoint -> ONNX',
      description='Export a jaxpose workdir to ONNX (RGB pixels in, normalisation inside), '
      'checked against JAX with onnxruntime.')
  export.add_arguments(export_parser)
  export_parser.set_defaults(run=_export)

  infer_parser = commands.add_parser(
      'infer', help='poses on an image, a folder of images or a video: tracked, drawn, saved',
      description=infer.__doc__.splitlines()[0])
  infer.add_arguments(infer_parser)
  infer_parser.set_defaults(run=_infer)

  evaluation = commands.add_parser(
      'eval', help='COCO keypoint AP of a results file (pycocotools); with --config '
      'C --workdir W, evaluate a model (see jaxpose/main.py)',
      description='Score a COCO keypoint results JSON against COCO annotations with '
      "pycocotools' COCOeval; the last line printed is the 10 metrics as one JSON object.")
  evaluation.add_argument('--coco-annotations', required=True,
                          help='COCO person_keypoints JSON, e.g. person_keypoints_val2017.json')
  evaluation.add_argument('--results', required=True,
                          help='results JSON: a list of {image_id, category_id, keypoints, score}')
  evaluation.set_defaults(run=_eval_results)

  demo = commands.add_parser(
      'demo', help='targets and a forward pass on the bundled COCO sample',
      description='Encode Gaussian targets for the bundled COCO people, run a '
      'stacked hourglass on their crops, decode, and save a picture.')
  demo.add_argument('--out', default='demo_out', help='folder for the pictures')
  demo.add_argument('--data', default=str(_DEFAULT_COCO_DIR),
                    help='folder with test_coco.json and its images')
  demo.set_defaults(run=_demo)
  return parser


# Subcommands configured with absl flags and ml_collections config files.
_ABSL_COMMANDS = ('train', 'sweep')


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  # `jaxpose eval --config C --workdir W` evaluates a model (absl, config
  # overrides); `jaxpose eval --coco-annotations A --results R` scores a file.
  model_eval = argv[:1] == ['eval'] and any(a.split('=')[0].split('.')[0] == '--config'
                                            for a in argv[1:])
  if argv and (argv[0] in _ABSL_COMMANDS or model_eval):
    from jaxpose import main as absl_main  # pylint: disable=g-import-not-at-top
    absl_main.run(argv[0], argv[1:])
    return
  args = build_parser().parse_args(argv)
  try:
    args.run(args)
  except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f'jaxpose {args.command}: {e}') from None


if __name__ == '__main__':
  main(sys.argv[1:])
