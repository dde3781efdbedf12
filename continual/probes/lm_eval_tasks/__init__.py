"""lm-evaluation-harness task YAMLs that ship with continual: ``lm_eval --include_path <this folder> --tasks
continual_cloze`` runs the embedded knowledge cloze items outside continual."""
