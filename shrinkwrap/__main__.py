import sys

from shrinkwrap.cli import main

sys.exit(main())
