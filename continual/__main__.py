import sys

from continual.cli import main

sys.exit(main())
