//! The performance tester (`codette-cache bench`): being written.
