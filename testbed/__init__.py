"""What starts the real parts (an API server, a KDC, the test node) and runs the program under mocks: used by
tests/ and bench/ alike."""
