"""One element per person: the top-down view of any per-image source."""

import numpy as np

# Example fields with one row per person; everything else (image, image_id)
# belongs to the whole image.
PER_PERSON_FIELDS = ('keypoints', 'visible', 'boxes', 'area', 'head_boxes', 'center', 'scale')


class PersonsOfImages:
  """Grain random-access source with one element per person of a per-image source (P = 1).

  Element k is person p of image i, in image order: image i's example (the
  whole image, other people drawn in it) with only row p of each
  `PER_PERSON_FIELDS` field and no `ignore_mask`, which a top-down crop does
  not use. Subclasses (`CocoPersons`, `MpiiPersons`, `SyntheticPersons`)
  only say how to count each image's people.
  """

  def __init__(self, images, people_per_image):
    """Wraps `images` (`__len__`, `__getitem__`) whose image i has `people_per_image[i]` people."""
    if len(people_per_image) != len(images):
      raise ValueError(f'{type(self).__name__}: {len(people_per_image)} counts for the '
                       f'{len(images)} images of {images!r}')
    self.images = images
    # starts[i]: the element index of image i's first person.
    self._starts = np.concatenate([[0], np.cumsum(people_per_image)]).astype(np.int64)

  def __len__(self) -> int:
    return int(self._starts[-1])

  def __repr__(self) -> str:
    return f'{type(self).__name__}({self.images!r}, num_persons={len(self)})'

  def __getitem__(self, index) -> dict:
    """Index -> example dict with P = 1."""
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f'index {index} out of range for {self!r}')
    image_index = int(np.searchsorted(self._starts, index, side='right')) - 1
    person = index - int(self._starts[image_index])
    example = dict(self.images[image_index])
    example.pop('ignore_mask', None)
    for field in PER_PERSON_FIELDS:
      if field in example:
        example[field] = np.asarray(example[field])[person:person + 1]
    return example
