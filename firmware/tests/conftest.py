# Under CPython the board-side packages are imported as on a board (`import metro`),
# and the helpers beside the tests (fsutil, fakes) as top-level modules, so the test
# functions here run unchanged under both interpreters.
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
