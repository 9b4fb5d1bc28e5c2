"""The documentation holds: every ```python block of README.md and docs/*.md runs as written.

Each block runs in-process, in a fresh namespace, from the repository root,
as a reader would paste it into a Python session in a checkout. Shell
commands are ```bash blocks and output ```text blocks; neither runs here.
Also: the README stays a manual (at most 12,000 characters) whose relative
links resolve, and BENCHMARKS.md opens with its table of current figures.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
README_LIMIT = 12_000
BENCHMARKS_TABLE_WITHIN = 1_500
_FENCE = re.compile(r'^```(\S*)\s*$')
_LINK = re.compile(r'\]\(([^)\s]+)(?:\s+"[^"]*")?\)')


def _name(path: pathlib.Path) -> str:
  return path.relative_to(ROOT).as_posix()


def code_blocks(path: pathlib.Path, language: str = 'python') -> list[tuple[int, str]]:
  """The fenced blocks of `language` in a Markdown file -> [(line of the block's first code line, source)]."""
  blocks, current, start = [], None, 0
  for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), start=1):
    fence = _FENCE.match(line)
    if current is None:
      if fence and fence.group(1):
        current, start, kind = [], number + 1, fence.group(1)
    elif fence and not fence.group(1):
      if kind == language:
        blocks.append((start, '\n'.join(current) + '\n'))
      current = None
    else:
      current.append(line)
  if current is not None:
    raise ValueError(f'{_name(path)}:{start - 1}: a ``` block that is never closed')
  return blocks


def _python_blocks():
  cases = []
  for path in DOCUMENTS:
    for index, (line, source) in enumerate(code_blocks(path), start=1):
      cases.append(pytest.param(_name(path), line, source, id=f'{_name(path)}:{index}'))
  return cases


@pytest.mark.parametrize('file, line, source', _python_blocks())
def test_python_block_runs_as_written(file, line, source, monkeypatch):
  monkeypatch.chdir(ROOT)
  exec(compile(source, f'{file}:{line}', 'exec'), {'__name__': '__main__'})  # pylint: disable=exec-used


def test_readme_is_at_most_12000_characters():
  length = len((ROOT / 'README.md').read_text(encoding='utf-8'))
  assert length <= README_LIMIT, (f'README.md has {length} characters, more than {README_LIMIT}: '
                                  'move depth to a docs/ page and link it')


def test_benchmarks_open_with_the_table_of_current_figures():
  text = (ROOT / 'BENCHMARKS.md').read_text(encoding='utf-8')
  match = re.search(r'^\|', text, re.MULTILINE)
  assert match is not None, 'BENCHMARKS.md has no table'
  assert match.start() < BENCHMARKS_TABLE_WITHIN, (
      f'BENCHMARKS.md: its first table starts at character {match.start()}, not within the '
      f'first {BENCHMARKS_TABLE_WITHIN}')


def _anchors(path: pathlib.Path) -> set[str]:
  """The heading anchors GitHub makes for a Markdown file (lowercase, punctuation dropped, spaces -> '-')."""
  anchors = set()
  in_code = False
  for line in path.read_text(encoding='utf-8').splitlines():
    if line.startswith('```'):
      in_code = not in_code
    elif not in_code and line.startswith('#'):
      title = line.lstrip('#').strip().lower()
      anchors.add(re.sub(r'[^\w\- ]', '', title).replace(' ', '-'))
  return anchors


def _relative_links(path: pathlib.Path) -> list[str]:
  text = path.read_text(encoding='utf-8')
  text = re.sub(r'^```.*?^```', '', text, flags=re.MULTILINE | re.DOTALL)  # not inside code
  return [target for target in _LINK.findall(text)
          if not re.match(r'^[a-z][a-z0-9+.-]*:', target)]  # http:, https:, mailto:


@pytest.mark.parametrize('path', DOCUMENTS, ids=_name)
def test_relative_links_point_to_existing_files(path):
  broken = []
  for target in _relative_links(path):
    file_part, _, anchor = target.partition('#')
    linked = (path.parent / file_part).resolve() if file_part else path
    if not linked.exists():
      broken.append(f'{target} (no such file)')
    elif anchor and linked.suffix == '.md' and anchor not in _anchors(linked):
      broken.append(f'{target} (no heading #{anchor} in {_name(linked)})')
  assert not broken, f'{_name(path)}: broken links: {broken}'
