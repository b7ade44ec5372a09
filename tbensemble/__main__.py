"""``python -m tbensemble`` is ``tbens``."""

from tbensemble.cli import main

main()
