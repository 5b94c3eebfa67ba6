//! Pipeline specifications: the YAML file a user writes (being built).
