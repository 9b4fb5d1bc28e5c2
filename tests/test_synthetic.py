"""jaxpose.data.synthetic: determinism, schema, and keypoints where the figures are drawn."""

import numpy as np
import pytest

from jaxpose import skeletons
from jaxpose.data import synthetic

NUM_IMAGES = 120
# COCO limbs between body joints (shoulders and below): thick enough that
# their midpoints are not lost under the thin face lines.
BODY_LIMBS = [k for k, (a, b) in enumerate(skeletons.COCO.limbs) if a >= 5 and b >= 5]


@pytest.fixture(scope='module')
def crowd():
  source = synthetic.SyntheticPeople(NUM_IMAGES, image_size=(128, 96), max_people=3, seed=5)
  return source, [source[i] for i in range(len(source))]


def _pixel(image, point):
  """RGB tuple of the pixel nearest to point (x, y)."""
  x, y = np.floor(np.asarray(point) + 0.5).astype(int)
  return tuple(int(c) for c in image[y, x])


def _joint_colors(joint):
  """The colours a joint's own pixel may have: its limbs', and the head's for face joints."""
  colors = {synthetic.LIMB_COLORS[k] for k, limb in enumerate(skeletons.COCO.limbs)
            if joint in limb}
  if joint < 5:
    colors.add(synthetic.HEAD_COLOR)
  return colors


def test_same_index_gives_same_example():
  first = synthetic.SyntheticPeople(10, seed=3)
  second = synthetic.SyntheticPeople(10, seed=3)
  other_seed = synthetic.SyntheticPeople(10, seed=4)
  for index in (0, 7, 7):
    a, b = first[index], second[index]
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(first[7]['image'], first[6]['image'])
  assert not np.array_equal(first[7]['image'], other_seed[7]['image'])


def test_schema(crowd):
  source, examples = crowd
  counts = []
  for index, example in enumerate(examples):
    assert set(example) == {'image', 'keypoints', 'visible', 'boxes', 'image_id'}
    assert example['image'].dtype == np.uint8 and example['image'].shape == (96, 128, 3)
    people = example['keypoints'].shape[0]
    counts.append(people)
    assert example['keypoints'].dtype == np.float32
    assert example['keypoints'].shape == (people, 17, 2)
    assert example['visible'].dtype == np.float32 and example['visible'].shape == (people, 17)
    assert example['boxes'].dtype == np.float32 and example['boxes'].shape == (people, 4)
    assert example['image_id'] == index
    assert set(np.unique(example['visible'])) <= {0.0, 1.0, 2.0}
    x, y, w, h = example['boxes'].T
    assert np.all((x >= 0) & (y >= 0) & (x + w <= 128 + 1e-3) & (y + h <= 96 + 1e-3))
    # Every labelled joint lies in its person's box.
    labelled = example['visible'] > 0
    kx, ky = example['keypoints'][..., 0], example['keypoints'][..., 1]
    assert np.all(~labelled | ((kx >= x[:, None] - 0.5) & (kx <= (x + w)[:, None] + 0.5) &
                               (ky >= y[:, None] - 0.5) & (ky <= (y + h)[:, None] + 0.5)))
  np.testing.assert_array_equal(counts, source.num_people(np.arange(NUM_IMAGES)))
  # 1..3 people, about a third each.
  frequencies = np.bincount(counts, minlength=4)[1:] / len(counts)
  assert np.all((frequencies > 0.2) & (frequencies < 0.47)), frequencies


def test_visibility_follows_the_image_border(crowd):
  _, examples = crowd
  keypoints = np.concatenate([e['keypoints'] for e in examples])
  visible = np.concatenate([e['visible'] for e in examples])
  pixel = np.floor(keypoints + 0.5)
  inside = ((pixel[..., 0] >= 0) & (pixel[..., 0] < 128) &
            (pixel[..., 1] >= 0) & (pixel[..., 1] < 96))
  np.testing.assert_array_equal(visible > 0, inside)
  # Some of each kind, so that the check above saw all three.
  assert 0.02 < np.mean(visible == 0) < 0.3
  assert 0.01 < np.mean(visible == 1) < 0.2
  assert np.mean(visible == 2) > 0.6


def test_limb_midpoints_have_the_limb_colour(crowd):
  _, examples = crowd
  hits = controls = total = 0
  for index, example in enumerate(examples):
    # The same limb of a person from another image: where this image mostly
    # has something else.
    elsewhere = examples[(index + 1) % len(examples)]['keypoints'][0]
    for keypoints, visible in zip(example['keypoints'], example['visible']):
      for k in BODY_LIMBS:
        a, b = skeletons.COCO.limbs[k]
        if visible[a] == 2 and visible[b] == 2:
          total += 1
          color = synthetic.LIMB_COLORS[k]
          hits += _pixel(example['image'], (keypoints[a] + keypoints[b]) / 2) == color
          control = np.clip((elsewhere[a] + elsewhere[b]) / 2, 0, (127, 95))
          controls += _pixel(example['image'], control) == color
  assert total > 500
  # The rest are midpoints under a limb drawn later (an arm across the torso).
  assert hits / total > 0.9
  assert controls / total < 0.05


def test_visible_joints_show_their_limbs_and_occluded_ones_do_not(crowd):
  _, examples = crowd
  shown = {1: [], 2: []}
  for example in examples:
    for keypoints, visible in zip(example['keypoints'], example['visible']):
      for joint in np.flatnonzero(visible):
        colour = _pixel(example['image'], keypoints[joint])
        shown[int(visible[joint])].append(colour in _joint_colors(joint))
  assert len(shown[2]) > 1000 and len(shown[1]) > 50
  assert np.mean(shown[2]) > 0.97
  # Covered by a later person (whose same limb has the same colour) or a blob.
  assert np.mean(shown[1]) < 0.3


def test_limb_colours_are_distinct():
  colors = set(synthetic.LIMB_COLORS) | {synthetic.HEAD_COLOR}
  assert len(colors) == len(skeletons.COCO.limbs) + 1
  # Left and right limbs differ, so the figures' sides can be learnt.
  mirrored = {(a, b): k for k, (a, b) in enumerate(skeletons.COCO.limbs)}
  perm = skeletons.COCO.flip_permutation()
  for k, (a, b) in enumerate(skeletons.COCO.limbs):
    mirror = mirrored.get((perm[a], perm[b]), mirrored.get((perm[b], perm[a])))
    if mirror != k:
      assert synthetic.LIMB_COLORS[mirror] != synthetic.LIMB_COLORS[k]


def test_person_view_lists_every_person_once():
  images = synthetic.SyntheticPeople(12, image_size=(64, 64), max_people=3, seed=1)
  persons = synthetic.SyntheticPersons(images)
  expected = [images[i] for i in range(len(images))]
  assert len(persons) == sum(e['keypoints'].shape[0] for e in expected)
  elements = [persons[k] for k in range(len(persons))]
  np.testing.assert_array_equal(np.concatenate([e['keypoints'] for e in elements]),
                                np.concatenate([e['keypoints'] for e in expected]))
  np.testing.assert_array_equal(np.concatenate([e['boxes'] for e in elements]),
                                np.concatenate([e['boxes'] for e in expected]))
  for element in elements:
    assert element['keypoints'].shape == (1, 17, 2)
    assert element['visible'].shape == (1, 17) and element['boxes'].shape == (1, 4)
    np.testing.assert_array_equal(element['image'], expected[element['image_id']]['image'])
  with pytest.raises(IndexError):
    persons[len(persons)]


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match='max_people'):
    synthetic.SyntheticPeople(4, max_people=0)
  with pytest.raises(IndexError, match='out of range'):
    synthetic.SyntheticPeople(4)[4]
