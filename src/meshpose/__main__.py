import sys

from meshpose.cli import main

sys.exit(main())
