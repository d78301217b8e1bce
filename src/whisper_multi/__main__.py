import sys

from whisper_multi.tools.cli import main

sys.exit(main())
