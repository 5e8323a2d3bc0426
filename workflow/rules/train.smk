# Stage 3: train one model per dataset and seed; checkpoint, latent means, loss history.


rule train:
    input:
        "results/{dataset}/preprocessed.h5ad",
    output:
        model=directory("results/{dataset}/{model}/{seed}/model"),
        latent="results/{dataset}/{model}/{seed}/latent.h5ad",
        history="results/{dataset}/{model}/{seed}/history.tsv",
        info="results/{dataset}/{model}/{seed}/train_info.json",
        loss=report(
            "results/{dataset}/{model}/{seed}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory=dataset_title,
            labels={"dataset": "{dataset}", "model": "{model}", "seed": "{seed}", "figure": "loss curves"},
        ),
    params:
        modality=modality,
        model_params=model_params,
        batch_key=lambda wc: DATASETS.loc[wc.dataset, "batch_key"],
        train=lambda wc: dcfg(wc)["train"],
        per_dataset=lambda wc: dcfg(wc)["per_dataset"],
        device=config["device"],
        # Resumable training checkpoint. Deliberately not an output (nor temp/shadow): Snakemake
        # would delete it when the job fails or is killed, which is exactly when it is needed. The
        # parameters are hashed into it (a changed config starts afresh); scripts/train.py removes it
        # once all outputs are written.
        checkpoint_dir=lambda wc: f"results/{wc.dataset}/{wc.model}/{wc.seed}/checkpoint",
    log:
        "logs/train/{dataset}/{model}/{seed}.log",
    benchmark:
        "logs/benchmarks/train/{dataset}/{model}/{seed}.tsv"
    threads: 2
    resources:
        mem_mb=config["resources"]["train_mem_mb"],
        runtime=config["resources"]["train_runtime_min"],
        gpu=1 if (config["device"] == "cuda" or (config["device"] == "auto" and config["gpu"])) else 0,
    conda:
        train_env
    script:
        "../../scripts/train.py"
