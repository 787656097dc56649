from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
ORACLE = DATA / "oracle_fixture_1"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    torch.set_num_threads(2)
