"""``python -m supervisor.cli``: the ``dsocr`` command without its console script."""

from supervisor.cli.main import main

main()
