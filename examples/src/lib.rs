//! Nothing here: this package holds the examples of staunch that need only tokio, and their tests.
