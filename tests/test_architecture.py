"""The package's shape: layers import only downwards, no import cycle, one abstract interface, names compared only where they mean something.

The layers, lowest first (docs/architecture.md):
  core: skeletons, files, config, codecs, losses, models
  data, metrics and tracking: readers and augmentation, metrics, trackers, checkpoints
  approaches: the interface and TopDown / BottomUp / StafBottomUp, protocols, the model runners (predictor)
  workflows: training and sweeps, evaluation, inference, deploy (none imports another)
  commands: the `jaxpose` command line
"""

import ast
import inspect
import pathlib
import re

import pytest

from jaxpose import approaches
from jaxpose.approaches import protocols

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'jaxpose'

# Module prefix -> (layer, group). A module may import from a lower layer, or
# from its own group; never from a higher layer or another group of its layer.
LAYERS = {
    'jaxpose.skeletons': (0, 'core'),
    'jaxpose.files': (0, 'core'),
    'jaxpose.config': (0, 'core'),
    'jaxpose.codecs': (0, 'core'),
    'jaxpose.losses': (0, 'core'),
    'jaxpose.models': (0, 'core'),
    'jaxpose.data': (1, 'data'),
    'jaxpose.metrics': (1, 'data'),
    # The trackers are host-side algorithms over people, as the metrics are:
    # STAF's approach scores its tracking with them during training.
    'jaxpose.tracking': (1, 'data'),
    # Checkpoints are read by every workflow (evaluation, inference, export).
    'jaxpose.training.checkpoint': (1, 'data'),
    'jaxpose.approaches': (2, 'approaches'),
    # The model runners (JAX or onnxruntime) that evaluation and inference call.
    'jaxpose.deploy.predictor': (2, 'approaches'),
    'jaxpose.training': (3, 'training'),
    'jaxpose.sweep': (3, 'training'),
    'jaxpose.evaluation': (3, 'evaluation'),
    'jaxpose.inference': (3, 'inference'),
    'jaxpose.deploy': (3, 'deploy'),
    'jaxpose.cli': (4, 'commands'),
    'jaxpose.commands': (4, 'commands'),
}
REPEATED_LINES = 6
MAX_ROOT_MODULES = 8


def _modules() -> dict[str, pathlib.Path]:
  """Dotted module name -> file, for every module of the package."""
  modules = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    modules['.'.join(parts)] = path
  return modules


def _layer(module: str) -> tuple[int, str]:
  matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + '.')]
  if not matches:
    raise AssertionError(f'{module} is in no layer of tests/test_architecture.py LAYERS')
  return LAYERS[max(matches, key=len)]


def _imports(path: pathlib.Path) -> set[str]:
  """The jaxpose modules a file imports (`from jaxpose.x import y` counts jaxpose.x.y if it is a module)."""
  modules = _modules()
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names if alias.name.startswith('jaxpose')}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('jaxpose'):
      for alias in node.names:
        name = f'{node.module}.{alias.name}'
        found.add(name if name in modules else node.module)
  return found


def test_every_module_has_a_layer():
  for module in _modules():
    if module != 'jaxpose':
      _layer(module)


def test_imports_go_down_the_layers():
  wrong = []
  for module, path in _modules().items():
    if module == 'jaxpose':
      continue
    layer, group = _layer(module)
    for imported in _imports(path):
      if imported == 'jaxpose':
        continue
      their_layer, their_group = _layer(imported)
      if their_layer > layer or (their_layer == layer and their_group != group):
        wrong.append(f'{module} ({group}) imports {imported} ({their_group})')
  assert not wrong, '\n'.join(wrong)


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
  # The check itself: a core module importing the trainer is reported.
  fake = tmp_path / 'jaxpose'
  (fake / 'codecs').mkdir(parents=True)
  (fake / '__init__.py').write_text('')
  (fake / 'codecs' / '__init__.py').write_text('')
  (fake / 'codecs' / 'heatmap.py').write_text('from jaxpose.training import trainer\n')
  (fake / 'training').mkdir()
  (fake / 'training' / '__init__.py').write_text('')
  (fake / 'training' / 'trainer.py').write_text('')
  monkeypatch.setattr(__import__(__name__), 'PACKAGE', fake)
  with pytest.raises(AssertionError, match=r'jaxpose.codecs.heatmap \(core\) imports '
                     r'jaxpose.training.trainer \(training\)'):
    test_imports_go_down_the_layers()


# `arch == ...`, `arch != ...`, `arch in ...`, `['arch'] == ...`, `... == config.model.arch`.
_ARCH_COMPARISON = re.compile(
    r"""arch\b['"]?\]?\)?\s*(==|!=|\bin\b|\bnot\s+in\b)|(==|!=)\s*[\w.]*arch\b""")


def test_architecture_names_are_compared_only_in_models():
  found = []
  for module, path in _modules().items():
    if module.startswith('jaxpose.models'):
      continue
    for number, line in enumerate(path.read_text().splitlines(), 1):
      code = line.split('#')[0]
      if _ARCH_COMPARISON.search(code):
        found.append(f'{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}')
  assert not found, '\n'.join(found)
  assert _ARCH_COMPARISON.search("if config.model.arch == 'hourglass':")
  assert _ARCH_COMPARISON.search("if description['arch'] != 'hourglass'")
  assert _ARCH_COMPARISON.search("per_person = arch in TOP_DOWN")


def _import_cycles() -> list[list[str]]:
  """Every import cycle among the package's modules (a module importing another counts, wherever the import stands)."""
  graph = {module: sorted(m for m in _imports(path) if m != module)
           for module, path in _modules().items()}
  cycles, state, stack = [], {}, []

  def visit(module):  # depth first; a back edge to a module on the stack closes a cycle
    state[module] = 'open'
    stack.append(module)
    for imported in graph.get(module, ()):
      if state.get(imported) == 'open':
        cycles.append(stack[stack.index(imported):] + [imported])
      elif imported not in state:
        visit(imported)
    stack.pop()
    state[module] = 'done'

  for module in sorted(graph):
    if module not in state:
      visit(module)
  return cycles


def test_no_import_cycle():
  assert _import_cycles() == []


def test_the_cycle_check_catches_a_cycle(tmp_path, monkeypatch):
  fake = tmp_path / 'jaxpose'
  (fake / 'sweep').mkdir(parents=True)
  (fake / '__init__.py').write_text('')
  (fake / 'sweep' / '__init__.py').write_text('')
  (fake / 'sweep' / 'runner.py').write_text('from jaxpose.sweep import scheduler\n')
  (fake / 'sweep' / 'scheduler.py').write_text('def main():\n  from jaxpose.sweep import runner\n')
  monkeypatch.setattr(__import__(__name__), 'PACKAGE', fake)
  assert _import_cycles() == [['jaxpose.sweep.runner', 'jaxpose.sweep.scheduler',
                               'jaxpose.sweep.runner']]


def test_the_package_root_holds_few_modules():
  root = sorted(path.name for path in PACKAGE.glob('*.py') if path.name != '__init__.py')
  assert len(root) <= MAX_ROOT_MODULES, root


def test_approach_is_the_abstract_interface_of_three_concrete_approaches():
  assert inspect.isabstract(approaches.Approach)
  with pytest.raises(TypeError, match='abstract'):
    approaches.Approach({'arch': 'hourglass'})  # pylint: disable=abstract-class-instantiated
  for approach, description in ((approaches.TopDown, {'arch': 'hourglass'}),
                                (approaches.BottomUp, {'arch': 'lightweight_openpose'}),
                                (approaches.StafBottomUp, {'arch': 'staf'})):
    assert issubclass(approach, approaches.Approach) and not inspect.isabstract(approach)
    assert type(approaches.for_description(description)) is approach
  # Every hook the callers use is declared on the interface, not only on an approach.
  hooks = {'check_data', 'transform', 'make_targets', 'loss', 'train_metrics', 'eval_sums',
           'summarize', 'forward', 'host_eval', 'last_maps', 'predict', 'person_boxes',
           'new_video_state', 'evaluate', 'tracking_results', 'export_signature', 'export_fn',
           'create_model', 'check_teacher'}
  assert hooks <= set(dir(approaches.Approach))
  assert approaches.Approach.__abstractmethods__ == {
      'check_data', 'transform', 'make_targets', 'loss', 'train_metrics', 'eval_sums',
      'last_maps', 'predict', 'evaluate'}


# The classes whose type a caller must not test: the approaches and the model families.
_TYPED = re.compile(r'\b(Approach|TopDown|BottomUp|Staf\w*|StackedHourglass|MmposeHourglass|'
                    r'LightweightOpenPose|CmuOpenPose)\b')
# Protocol names as strings: today's and the per-case values before them.
_PROTOCOL_NAMES = set(protocols.PROTOCOLS) | {'jaxpose', 'bearpaw', 'mmpose'}


def _type_tests_and_protocol_comparisons(path: pathlib.Path) -> list[str]:
  """`isinstance(x, <approach or model class>)` and `x == '<protocol name>'` (or in/!=) in a file."""
  found = []
  for node in ast.walk(ast.parse(path.read_text())):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in ('isinstance', 'issubclass') and len(node.args) == 2
        and _TYPED.search(ast.unparse(node.args[1]))):
      found.append(f'{path.name}:{node.lineno}: {ast.unparse(node)}')
    if isinstance(node, ast.Compare):
      strings = [part.value for part in (node.left, *node.comparators)
                 if isinstance(part, ast.Constant) and isinstance(part.value, str)]
      if any(string in _PROTOCOL_NAMES for string in strings):
        found.append(f'{path.name}:{node.lineno}: {ast.unparse(node)}')
  return found


def test_callers_never_test_an_approachs_type_or_a_protocols_name():
  found = []
  for module, path in _modules().items():
    if not module.startswith('jaxpose.approaches'):
      found += _type_tests_and_protocol_comparisons(path)
  assert found == []


def test_the_type_and_name_check_catches_both(tmp_path):
  caller = tmp_path / 'caller.py'
  caller.write_text('if isinstance(model.approach, approaches.StafBottomUp):\n  pass\n'
                    "if options.coco_protocol == 'mmpose':\n  pass\n"
                    "if name in ('bearpaw_mpii', 'x'):\n  pass\n"
                    'if isinstance(value, dict):\n  pass\n')
  assert [line.split(':')[1] for line in _type_tests_and_protocol_comparisons(caller)] == [
      '1', '3']


def test_the_installed_package_reads_nothing_of_tests():
  for path in _modules().values():
    assert not re.search(r"""['"/]tests['"/]""", path.read_text()), path


def _code_lines(path: pathlib.Path) -> list[tuple[int, str]]:
  """(line number, stripped line) of the code: no blank lines, comments, imports or docstring-only lines."""
  lines = []
  for number, line in enumerate(path.read_text().splitlines(), 1):
    stripped = line.strip()
    if (not stripped or stripped.startswith(('#', 'import ', 'from ', '"""', "'''"))
        or stripped in (')', ']', '}', '):', 'else:', 'try:', 'return')):
      continue
    lines.append((number, stripped))
  return lines


def test_no_block_of_six_lines_is_repeated():
  seen = {}
  repeated = []
  for module, path in _modules().items():
    lines = _code_lines(path)
    for i in range(len(lines) - REPEATED_LINES + 1):
      block = tuple(text for _, text in lines[i:i + REPEATED_LINES])
      place = (path.relative_to(PACKAGE.parent), lines[i][0])
      if block in seen and seen[block][0] != place[0] or (
          block in seen and abs(seen[block][1] - place[1]) >= REPEATED_LINES):
        repeated.append(f'{seen[block][0]}:{seen[block][1]} and {place[0]}:{place[1]}')
      seen.setdefault(block, place)
  assert not repeated, '\n'.join(repeated)


def test_the_architecture_page_names_every_hook_and_protocol():
  page = (PACKAGE.parent / 'docs' / 'architecture.md').read_text()
  public = {name for name, member in vars(approaches.Approach).items()
            if not name.startswith('_') and callable(getattr(member, 'fget', member))}
  missing = sorted(name for name in public if f'`{name}' not in page and f' {name}(' not in page)
  assert missing == [] and len(public) >= 20
  assert all(f'`{name}`' in page for name in protocols.PROTOCOLS)
