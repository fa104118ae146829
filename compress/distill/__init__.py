"""Knowledge distillation (Hinton, Vinyals & Dean 2015): losses, teacher soft labels, distill/scratch arms."""

from compress.distill.api import KDConfig, distill, make_student, train_scratch
from compress.distill.losses import hard_term, kd_loss, soft_term
from compress.distill.soft_labels import load_soft_labels, save_soft_labels, soft_labels

__all__ = ["KDConfig", "distill", "hard_term", "kd_loss", "load_soft_labels", "make_student", "save_soft_labels",
           "soft_labels", "soft_term", "train_scratch"]
