import sys

from kernelmagic.frontends.cli import main

sys.exit(main())
