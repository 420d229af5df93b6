"""`python -m spot ...`: the same command line as the `spot` console script."""

from spot.cli import main

if __name__ == "__main__":
    main()
