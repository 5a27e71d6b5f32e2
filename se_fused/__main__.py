"""python -m se_fused: versions, build, devices and a self-check (se_fused/_diagnose.py)."""
import sys

from ._diagnose import main

sys.exit(main())
