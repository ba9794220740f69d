import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("CNNVIZ_QUICK", "1")


@pytest.fixture()
def student_mode():
    """Exercise checks as in a student copy (a wrong answer returns its Feedback); reset afterwards."""
    from cnnviz_helpers import exercises

    exercises.student_copy(True)
    yield
    exercises.student_copy(False)
