"""Infrastructure every layer may use: settings (the one module that reads the environment), errors and
the key mask, the output gate, safe file reading and cache writing, remote calls, loaded models."""
