import sys

from imagebot.cli import main

sys.exit(main())
