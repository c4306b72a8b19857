"""The math layer: Green's functions, the two loopy templates, the operators as their
specialisations with their KIFMM facts, surfaces and expansions, the precomputed matrices and
numpy references. Pure math: no OpenCL, no caches, no devices, no tree."""
