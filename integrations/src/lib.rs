//! Nothing here: this package holds examples of staunch with other crates, and their tests.
