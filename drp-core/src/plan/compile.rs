//! Plan → [`RunSpec`].
