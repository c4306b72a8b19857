"""``examples/periodic_madelung.py`` runs, reaches its accuracies (a crystal, a slab's layer,
a wire's chain and a random system) and says so."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "periodic_madelung.py"


@pytest.mark.slow
def test_example_reports_madelung_constants_and_a_random_system():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--cells", "1", "--n", "2000",
                           "--samples", "100"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("NaCl: Madelung constant 1.7475645") and "(ok)" in lines[0]
    assert lines[1].startswith("CsCl: Madelung constant 1.7626747") and "(ok)" in lines[1]
    assert lines[2].startswith("square layer (slab): Madelung constant 1.6155426") \
        and "(ok)" in lines[2]
    assert lines[3].startswith("chain (wire): Madelung constant 1.3862943") and "(ok)" in lines[3]
    assert "2000 random neutral charges, order 7" in lines[4] and "(ok)" in lines[4]
    assert "periodic" in lines[5] and "free space" in lines[5]
