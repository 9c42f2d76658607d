"""Reference implementations, one row (or one value) at a time: the oracles the tests
compare the product's vectorised kernels against. Not used by the pipeline."""
