"""Interpretability metrics of saliency maps: Average Drop / Increase / Gain, insertion / deletion (RISE),
+/- perturbation and, where object masks exist (the built-in dataset), the (energy) pointing game.

Reads the maps that ``recognition_imagenet.py --salient`` saved (STORE_DIR/saliency_<method>.npz) or computes
them (--method, --compute); writes STORE_DIR/metrics.csv (per image), summary.json (means x100 + the protocol
card) and curves_*.png.

    python objrecon_imagenet.py --state_root [path_model] --store_dir [path_report] --root_data [root for data] \\
        --path_lbl [path for labels] --batch_size 60 --model [model] --use_gpu --classes [#Classes]
    python objrecon_imagenet.py --state_root runs/ca --store_dir Evaluation/ca --method gradcam attention
    python objrecon_imagenet.py ... --protocol rise                         # RISE's settings
    python objrecon_imagenet.py ... --store_dir Evaluation/ca --compare Evaluation/gap   # GAP vs CA
    torchrun --nproc_per_node 4 objrecon_imagenet.py ... --use_gpu
"""
from utils.objrecon import main

if __name__ == "__main__":
    main(description=__doc__)
