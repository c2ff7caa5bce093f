"""Command-line tools of the project: the main job (`make run`) and its helpers."""
