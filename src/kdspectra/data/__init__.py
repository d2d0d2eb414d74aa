"""Data: dataset archives and their download, the prepared arrays, training views
(augmentation), Gaussian noise, common corruptions and embedding files. Imports the ground
floor and runtime."""
