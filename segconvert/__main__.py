"""``python -m segconvert`` is the ``segconvert`` command."""

from segconvert.interfaces.cli import main

if __name__ == "__main__":
    main()
