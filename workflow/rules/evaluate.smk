# Evaluation: the pointing game per method and split, the randomisation test per method, then
# tables, figures and the report; with audit.enabled, the paper audit per method and split;
# localisation, the FROC and faithfulness per method and split, each with its tables.


rule pointing:
    input:
        model="results/model/model.pt",
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        "results/pointing/{method}/{split}.csv",
    log:
        "results/logs/pointing/{method}/{split}.log",
    benchmark:
        "results/benchmarks/pointing/{method}/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        tau=config["pointing"]["tau"],
    shell:
        "xiqa pointing --model {input.model:q} --images {input.images:q} --tau {params.tau}"
        " --out {output:q}"
        " {input.shards:q} 2> {log:q}"


rule sanity:
    input:
        model="results/model/model.pt",
        images=f"results/cache/{config['sanity']['split']}.h5",
    output:
        "results/sanity/{method}.csv",
    log:
        "results/logs/sanity/{method}.log",
    benchmark:
        "results/benchmarks/sanity/{method}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    # Mostly process start (single-threaded) on the demo: two jobs side by side fill two cores.
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        entry=method_entry,
        n_images=config["sanity"]["n_images"],
        seed=config["sanity"]["seed"],
        stages=sanity_stages_option(),
    shell:
        "xiqa sanity --model {input.model:q} --images {input.images:q}"
        " --method {wildcards.method:q} --params {params.entry:q}"
        " --n-images {params.n_images} --seed {params.seed} {params.stages}"
        " --out {output:q} 2> {log:q}"


localrules:
    aggregate,
    audit_table,
    localisation_table,
    froc_table,
    faithfulness_table,


rule aggregate:
    input:
        pointing=expand(
            "results/pointing/{method}/{split}.csv",
            method=list(config["methods"]),
            split=config["splits"],
        ),
        predictions=expand("results/predictions/{split}.csv", split=config["splits"]),
        metrics=expand("results/predictions/{split}.json", split=config["splits"]),
        sanity=expand("results/sanity/{method}.csv", method=list(config["methods"])),
    output:
        tables=multiext("results/tables/pointing_game", ".csv", ".md", ".tex"),
        classification=multiext("results/tables/classification", ".csv", ".md"),
        curve="results/tables/pointing_curve.csv",
        energy=multiext("results/tables/energy_pointing", ".csv", ".md"),
        sanity="results/tables/sanity_randomisation.csv",
        figures=[
            report(
                f"results/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURES
        ],
        pdfs=expand("results/figures/{name}.pdf", name=FIGURES),
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=json.dumps(config["methods"]),
        splits=",".join(config["splits"]),
        tau=config["pointing"]["tau"],
        curve_factors=",".join(map(str, config["pointing"]["curve_factors"])),
        paper=paper_option(),
    shell:
        "xiqa aggregate --results {params.results:q} --methods {params.methods:q} --splits {params.splits}"
        " --tau {params.tau} --curve-factors {params.curve_factors} {params.paper} 2> {log:q}"


# The paper audit: one job per audited method and split scores every variant of the method on
# the split's positive images with a box (maps are not kept), then one table and figure.
AUDITED = audited_methods()


rule audit:
    input:
        model="results/model/model.pt",
        images="results/cache/{split}.h5",
    output:
        "results/audit/{method}/{split}.csv",
    log:
        "results/logs/audit/{method}/{split}.log",
    benchmark:
        "results/benchmarks/audit/{method}/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        variants=audit_variants_json,
        tau=config["pointing"]["tau"],
    shell:
        "xiqa audit --model {input.model:q} --images {input.images:q}"
        " --method {wildcards.method:q} --variants {params.variants:q}"
        " --tau {params.tau} --out {output:q} 2> {log:q}"


rule audit_table:
    input:
        expand(
            "results/audit/{method}/{split}.csv",
            method=AUDITED,
            split=config["splits"],
        ),
    output:
        tables=multiext("results/tables/audit", ".csv", ".md", ".tex"),
        figure=report(
            "results/figures/audit.png",
            caption="../report/audit.rst",
            category="Figures",
        ),
        pdf="results/figures/audit.pdf",
    log:
        "results/logs/audit_table.log",
    benchmark:
        "results/benchmarks/audit_table.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=json.dumps({m: config["methods"][m] for m in AUDITED}),
        splits=",".join(config["splits"]),
        tau=config["pointing"]["tau"],
        paper=paper_option(),
    shell:
        "xiqa audit-table --results {params.results:q} --methods {params.methods:q}"
        " --splits {params.splits} --tau {params.tau} {params.paper} 2> {log:q}"


# Localisation beyond one peak: per method and split from the shards, then tables and a figure;
# the FROC of the methods that explain every image (froc.methods).


rule localisation:
    input:
        model="results/model/model.pt",
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        "results/localisation/{method}/{split}.csv",
    log:
        "results/logs/localisation/{method}/{split}.log",
    benchmark:
        "results/benchmarks/localisation/{method}/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "xiqa localisation --model {input.model:q} --images {input.images:q}"
        " --out {output:q} {input.shards:q} 2> {log:q}"


rule localisation_table:
    input:
        localisation=expand(
            "results/localisation/{method}/{split}.csv",
            method=list(config["methods"]),
            split=config["splits"],
        ),
        pointing=expand(
            "results/pointing/{method}/{split}.csv",
            method=list(config["methods"]),
            split=config["splits"],
        ),
    output:
        tables=multiext("results/tables/localisation", ".csv", ".md", ".tex"),
        sizes=multiext("results/tables/localisation_by_size", ".csv", ".md"),
        figure=report(
            "results/figures/localisation_by_size.png",
            caption="../report/localisation_by_size.rst",
            category="Figures",
        ),
        pdf="results/figures/localisation_by_size.pdf",
    log:
        "results/logs/localisation_table.log",
    benchmark:
        "results/benchmarks/localisation_table.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=json.dumps(config["methods"]),
        splits=",".join(config["splits"]),
        fraction=config["localisation"]["fraction"],
        size_bounds=",".join(map(str, config["localisation"]["size_bounds"])),
    shell:
        "xiqa localisation-table --results {params.results:q} --methods {params.methods:q}"
        " --splits {params.splits} --fraction {params.fraction:q}"
        " --size-bounds {params.size_bounds:q} 2> {log:q}"


rule froc:
    input:
        model="results/model/model.pt",
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        multiext(
            "results/froc/{method}/{split}/",
            "prediction_localization.csv",
            "prediction_classification.csv",
        ),
    log:
        "results/logs/froc/{method}/{split}.log",
    benchmark:
        "results/benchmarks/froc/{method}/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        out=lambda wildcards, output: os.path.dirname(output[0]),
        radius=config["froc"]["nms_radius"],
        top_k=config["froc"]["top_k"],
        score=config["froc"]["score"],
    shell:
        "xiqa froc --model {input.model:q} --images {input.images:q} --out {params.out:q}"
        " --radius {params.radius:q} --top-k {params.top_k:q} --score {params.score:q}"
        " {input.shards:q} 2> {log:q}"


rule froc_table:
    input:
        predictions=expand(
            "results/froc/{method}/{split}/prediction_localization.csv",
            method=FROC_METHODS,
            split=config["splits"],
        ),
        caches=expand("results/cache/{split}.h5", split=config["splits"]),
    output:
        tables=multiext("results/tables/froc", ".csv", ".md", ".tex"),
        figure=report(
            "results/figures/froc.png",
            caption="../report/froc.rst",
            category="Figures",
        ),
        pdf="results/figures/froc.pdf",
    log:
        "results/logs/froc_table.log",
    benchmark:
        "results/benchmarks/froc_table.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=",".join(FROC_METHODS),
        splits=",".join(config["splits"]),
    shell:
        "xiqa froc-table --results {params.results:q} --methods {params.methods:q}"
        " --splits {params.splits} 2> {log:q}"


# Faithfulness (deletion, insertion, ROAD) of each method's maps per split, the chance maps once
# per split on the same images, then tables and a figure.


rule faithfulness:
    input:
        model="results/model/model.pt",
        images="results/cache/{split}.h5",
        shards=method_shards,
    output:
        "results/faithfulness/{method}/{split}.csv",
    log:
        "results/logs/faithfulness/{method}/{split}.log",
    benchmark:
        "results/benchmarks/faithfulness/{method}/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        options=faithfulness_options(),
    shell:
        "xiqa faithfulness --model {input.model:q} --images {input.images:q} {params.options}"
        " --out {output:q} {input.shards:q} 2> {log:q}"


rule faithfulness_chance:
    input:
        model="results/model/model.pt",
        images="results/cache/{split}.h5",
    output:
        "results/faithfulness/_baselines/{split}.csv",
    log:
        "results/logs/faithfulness/_baselines/{split}.log",
    benchmark:
        "results/benchmarks/faithfulness/_baselines/{split}.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        options=faithfulness_options(),
    shell:
        "xiqa faithfulness --chance --model {input.model:q} --images {input.images:q}"
        " {params.options} --out {output:q} 2> {log:q}"


rule faithfulness_table:
    input:
        expand(
            "results/faithfulness/{method}/{split}.csv",
            method=list(config["methods"]),
            split=config["splits"],
        ),
        expand("results/faithfulness/_baselines/{split}.csv", split=config["splits"]),
    output:
        tables=multiext("results/tables/faithfulness", ".csv", ".md", ".tex"),
        figure=report(
            "results/figures/faithfulness.png",
            caption="../report/faithfulness.rst",
            category="Figures",
        ),
        pdf="results/figures/faithfulness.pdf",
    log:
        "results/logs/faithfulness_table.log",
    benchmark:
        "results/benchmarks/faithfulness_table.tsv"
    conda:
        "../../envs/xiqa.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        results=lambda wildcards, output: os.path.dirname(
            os.path.dirname(output.tables[0])
        ),
        methods=json.dumps(config["methods"]),
        splits=",".join(config["splits"]),
    shell:
        "xiqa faithfulness-table --results {params.results:q} --methods {params.methods:q}"
        " --splits {params.splits} 2> {log:q}"
