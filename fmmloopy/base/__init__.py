"""The foundation every layer may use: checks of user input, OpenCL device selection and
device classes, and the point distributions of examples, checks and benchmarks."""
