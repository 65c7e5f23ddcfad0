"""Actions: build, run, describe... Each returns data and prints nothing."""
