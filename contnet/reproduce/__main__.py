"""`python -m contnet.reproduce ...` == `contnet reproduce ...`."""
import sys

from contnet.reproduce.driver import main

sys.exit(main())
