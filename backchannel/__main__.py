import sys

from backchannel.cli import main

sys.exit(main())
