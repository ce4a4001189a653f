# Under CPython the board-side packages are imported as on a board (`import metro`),
# so the test functions here run unchanged under both interpreters.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
