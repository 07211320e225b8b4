//! Bad input of every kind gets a clear error and stores nothing.
