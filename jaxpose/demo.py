"""The quick start until training exists: targets and a forward pass on bundled COCO people.

For every annotated person of the bundled COCO sample: crop 256x256 around the
box, move the joints into the crop, encode Gaussian targets on the device,
decode them back (checking the round trip in pixels), run a stacked hourglass
forward pass on the crops, and save a contact sheet of crops with skeletons and
target heatmaps.
"""

import json
import os
import pathlib
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import skeletons, visualize
from jaxpose.codecs import heatmap
from jaxpose.data import transforms
from jaxpose.models.hourglass import StackedHourglass

DEFAULT_COCO_DIR = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'coco'
IMAGE_SIZE = (256, 256)
HEATMAP_SIZE = (64, 64)
SIGMA = 2
# ImageNet statistics, as the reference top-down models normalise inputs.
PIXEL_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
PIXEL_STD = np.array([0.229, 0.224, 0.225], np.float32)


def load_people(coco_dir: pathlib.Path):
  """Bundled COCO sample -> crops [N, 256, 256, 3] uint8 RGB, joints [N, 17, 2], visible [N, 17]."""
  annotation_file = coco_dir / 'test_coco.json'
  if not annotation_file.exists():
    raise FileNotFoundError(f'{annotation_file}: COCO sample not found (run from a '
                            'clone of jaxpose, or pass --data)')
  coco = json.loads(annotation_file.read_text())
  images = {image['id']: image for image in coco['images']}
  crops, joints, visible = [], [], []
  for annotation in coco['annotations']:
    if annotation.get('num_keypoints', 0) == 0 or annotation.get('iscrowd', 0):
      continue
    path = coco_dir / images[annotation['image_id']]['file_name']
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
      raise ValueError(f'{path}: not a readable image')
    keypoints = np.asarray(annotation['keypoints'], np.float64).reshape(-1, 3)
    center, size = transforms.box_to_center_scale(annotation['bbox'],
                                                  IMAGE_SIZE[0] / IMAGE_SIZE[1])
    matrix = transforms.crop_matrix(center, size, IMAGE_SIZE)
    crops.append(cv2.cvtColor(transforms.warp(image, matrix, IMAGE_SIZE), cv2.COLOR_BGR2RGB))
    joints.append(transforms.apply_affine(keypoints[:, :2], matrix))
    visible.append(keypoints[:, 2] > 0)
  return (np.stack(crops), np.stack(joints).astype(np.float32),
          np.stack(visible).astype(np.float32))


def run(out_dir: str, coco_dir: pathlib.Path = DEFAULT_COCO_DIR) -> dict:
  """Runs the demo, writes `out_dir/targets.png`, returns its figures."""
  crops, joints, visible = load_people(pathlib.Path(coco_dir))
  print(f'{len(crops)} people from {coco_dir}; jax {jax.__version__} on '
        f'{jax.devices()[0].platform}')

  encode = jax.jit(lambda j, v: heatmap.encode(
      j, v, image_size=IMAGE_SIZE, heatmap_size=HEATMAP_SIZE, sigma=SIGMA))
  targets, weights = encode(joints, visible)
  coords, _ = jax.jit(heatmap.decode)(targets)
  stride = IMAGE_SIZE[0] / HEATMAP_SIZE[0]
  used = np.asarray(weights) > 0
  error = np.linalg.norm(np.asarray(coords) * stride - joints, axis=-1)[used]
  print(f'targets {targets.shape}: {used.sum()} visible joints on the crops, '
        f'decode(encode) error mean {error.mean():.2f} px, max {error.max():.2f} px')

  model = StackedHourglass(num_stacks=2, num_blocks=1, num_joints=skeletons.COCO.num_keypoints)
  images = (crops.astype(np.float32) / 255 - PIXEL_MEAN) / PIXEL_STD
  variables = jax.jit(model.init)(jax.random.key(0), jnp.asarray(images[:1]))
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  jax.block_until_ready(forward(variables, images))
  start = time.perf_counter()
  outputs = jax.block_until_ready(forward(variables, images))
  seconds = time.perf_counter() - start
  num_params = sum(p.size for p in jax.tree_util.tree_leaves(variables['params']))
  print(f'StackedHourglass(2 stacks, {num_params:,} params, untrained): '
        f'{len(outputs)} outputs of {outputs[-1].shape}, '
        f'{len(images) / seconds:.1f} images/s')

  tiles = []
  for crop, target, joint, vis in zip(crops, np.asarray(targets), joints, visible):
    bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    tiles.append(np.concatenate([
        visualize.draw_skeleton(bgr, joint, vis, skeletons.COCO),
        visualize.overlay_heatmaps(bgr, target)], axis=1))
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, 'targets.png')
  cv2.imwrite(path, np.concatenate(tiles[:6], axis=0))
  print(f'wrote {path}: crops with skeletons | Gaussian targets')
  return {'people': len(crops), 'mean_error_px': float(error.mean()),
          'max_error_px': float(error.max()), 'images_per_second': len(images) / seconds}
