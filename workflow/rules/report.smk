# Report stage: Tables I-II, the ablation, the teachers table, the data behind Figures 2
# and 3, the geometry table (every metric of every model), the paper comparison, the
# claims judged, Figures 1-3 and the resolved config.
# Every CSV has a .provenance.json sidecar (commit, config hash, teacher weights as the
# teachers' meta.json record them, random-init flag). Cheap, so they run on the submit host.


from kdspectra.paper.robustness import chance_level


localrules:
    resolved_config,
    collect,
    table,
    data_table,
    fig4_data,
    geometry_table,
    paper_comparison,
    claims,
    figure,
    fig6_mirror,
    fig7_tradeoff,
    table_html,
    verdict_summary,


# The report (`snakemake --report`) names each table and figure by what it is, not by its
# path: category / subcategory, then labels. "Tables" holds every table as an HTML page
# (the report shows HTML inline; a .md or .csv is only a download); "Table files" the CSV
# and Markdown files themselves, with their captions. No label may hold a comma: the report
# keys a subcategory's rows by their label values joined with commas, and one comma inside
# a value leaves a row without its file (the page goes blank in the browser).
TABLE_INFO = {
    "table1": ("The paper's tables", "Table I", "effective rank of cosine students"),
    "table2": ("The paper's tables", "Table II", "effective rank with InfoNCE"),
    "ablation": ("The paper's tables", "Ablation", "effective rank by architecture"),
    "claims": ("Claims", "Claims judged", "each claim with interval and verdict"),
    "paper_comparison": ("Claims", "Paper vs this run", "every number of the paper"),
    "fig2": ("Data behind the figures", "Figure 2 data", "effective rank per student"),
    "fig3": ("Data behind the figures", "Figure 3 data", "accuracy under noise"),
    "fig4": ("Data behind the figures", "Figure 4 data", "geometry during training"),
    "teachers": ("Beyond the paper", "Teachers", "teacher geometry and accuracy"),
    "geometry": ("Beyond the paper", "Geometry", "RankMe / α-ReQ / uniformity / CKA"),
    "corruptions": ("Beyond the paper", "Corruptions", "common corruptions"),
}
FIGURE_INFO = {
    "fig1_spectrum": ("The paper's figures", "Figure 1", "singular value spectra"),
    "fig2_effective_rank": ("The paper's figures", "Figure 2", "effective rank"),
    "fig3_noise_robustness": ("The paper's figures", "Figure 3", "accuracy vs noise"),
    "fig4_dynamics": ("Beyond the paper", "Figure 4", "effective rank during training"),
}


rule resolved_config:
    output:
        config=f"{RUN}/config.resolved.yaml",
    log:
        f"{RUN}/logs/resolved_config.log",
    conda:
        ENV
    params:
        config=config,
    script:
        "../scripts/resolved_config.py"


rule table:
    input:
        summary=f"{RUN}/summary.parquet",
        noise=f"{RUN}/noise.parquet",
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        csv=report(
            f"{RUN}/tables/{{table}}.csv",
            caption="../report/table.rst",
            category="Table files",
            subcategory=lambda wc: TABLE_INFO[wc.table][0],
            labels=lambda wc: table_labels(wc.table, "csv"),
        ),
        md=f"{RUN}/tables/{{table}}.md",
        tex=f"{RUN}/tables/{{table}}.tex",
        provenance=f"{RUN}/tables/{{table}}.provenance.json",
    log:
        f"{RUN}/logs/tables/{{table}}.log",
    conda:
        ENV
    params:
        options=lambda wc: table_options(wc.table),
        provenance=provenance(),
    script:
        "../scripts/table.py"


rule data_table:
    input:
        summary=f"{RUN}/summary.parquet",
        noise=f"{RUN}/noise.parquet",
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        csv=report(
            f"{RUN}/tables/{{data_table}}.csv",
            caption="../report/data_table.rst",
            category="Table files",
            subcategory=lambda wc: TABLE_INFO[wc.data_table][0],
            labels=lambda wc: table_labels(wc.data_table, "csv"),
        ),
        provenance=f"{RUN}/tables/{{data_table}}.provenance.json",
    log:
        f"{RUN}/logs/tables/{{data_table}}.log",
    wildcard_constraints:
        data_table=r"teachers|fig2|fig3",
    conda:
        ENV
    params:
        options=lambda wc: table_options(wc.data_table),
        provenance=provenance(),
    script:
        "../scripts/table.py"


# Figure 4's data: the geometry every run tracked during training (training.track_every).
rule fig4_data:
    input:
        unpack(fig4_input),
    output:
        csv=report(
            f"{RUN}/tables/fig4.csv",
            caption="../report/fig4.rst",
            category="Table files",
            subcategory=TABLE_INFO["fig4"][0],
            labels=table_labels("fig4", "csv"),
        ),
        provenance=f"{RUN}/tables/fig4.provenance.json",
    log:
        f"{RUN}/logs/tables/fig4.log",
    conda:
        ENV
    params:
        options=table_options("fig4"),
        provenance=provenance(),
    script:
        "../scripts/fig4_data.py"


rule geometry_table:
    input:
        summary=f"{RUN}/summary.parquet",
        noise=f"{RUN}/noise.parquet",
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        csv=report(
            f"{RUN}/tables/geometry.csv",
            caption="../report/geometry.rst",
            category="Table files",
            subcategory=TABLE_INFO["geometry"][0],
            labels=table_labels("geometry", "csv"),
        ),
        md=f"{RUN}/tables/geometry.md",
        provenance=f"{RUN}/tables/geometry.provenance.json",
    log:
        f"{RUN}/logs/tables/geometry.log",
    conda:
        ENV
    params:
        options=table_options("geometry"),
        provenance=provenance(),
    script:
        "../scripts/table.py"


rule paper_comparison:
    input:
        summary=f"{RUN}/summary.parquet",
        noise=f"{RUN}/noise.parquet",
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        md=report(
            f"{RUN}/tables/paper_comparison.md",
            caption="../report/paper_comparison.rst",
            category="Table files",
            subcategory=TABLE_INFO["paper_comparison"][0],
            labels=table_labels("paper_comparison", "md"),
        ),
    log:
        f"{RUN}/logs/tables/paper_comparison.log",
    conda:
        ENV
    params:
        options=paper_comparison_options(),
        provenance=provenance(),
    script:
        "../scripts/paper_comparison.py"


rule claims:
    input:
        summary=f"{RUN}/summary.parquet",
        noise=f"{RUN}/noise.parquet",
        # The robustness claim on common corruptions too ([] when the stage is off).
        corruptions=corruptions_input(),
        # Figure 1's spectra: spectrum_tracks_teacher ([] when Figure 1 is left out).
        spectra=lambda wc: fig1_input(wc) if "fig1_spectrum" in REPORT.include else [],
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        csv=f"{RUN}/tables/claims.csv",
        md=report(
            f"{RUN}/tables/claims.md",
            caption="../report/claims.rst",
            category="Table files",
            subcategory=TABLE_INFO["claims"][0],
            labels=table_labels("claims", "md"),
        ),
        provenance=f"{RUN}/tables/claims.provenance.json",
    log:
        f"{RUN}/logs/tables/claims.log",
    conda:
        ENV
    params:
        options=claims_options(),
        provenance=provenance(),
        # Chance accuracy of the figures experiment (robustness rows) and the fidelity guard.
        chance=chance_level(config, config["report"]["figures"]),
        min_fidelity_gain=config["evaluation"].get("min_fidelity_gain", 0.25),
        fig1=figure_options("fig1_spectrum"),
    script:
        "../scripts/claims.py"


rule figure:
    input:
        unpack(figure_input),
    output:
        png=report(
            f"{RUN}/figures/{{figure}}.png",
            caption="../report/figure.rst",
            category="Figures",
            subcategory=lambda wc: FIGURE_INFO[wc.figure][0],
            labels=lambda wc: dict(
                zip(("figure", "shows"), FIGURE_INFO[wc.figure][1:])
            ),
        ),
        pdf=f"{RUN}/figures/{{figure}}.pdf",
    log:
        f"{RUN}/logs/figures/{{figure}}.log",
    wildcard_constraints:
        figure=r"fig1_spectrum|fig2_effective_rank|fig3_noise_robustness|fig4_dynamics",
    conda:
        ENV
    params:
        options=lambda wc: figure_options(wc.figure),
        provenance=provenance(),
        # Figure 3's chance line (the figures experiment's 1 / classes).
        chance=chance_level(config, config["report"]["figures"]),
    script:
        "../scripts/figure.py"


# Figure 6, the mirror: only in a run with a recolour dial (MIRROR, common.smk).
rule fig6_mirror:
    input:
        summary=f"{RUN}/summary.parquet",
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        png=report(
            f"{RUN}/figures/fig6_mirror.png",
            caption="../report/fig6_mirror.rst",
            category="Figures",
            subcategory="Beyond the paper",
            labels={
                "figure": "Figure 6",
                "shows": "student ER vs teacher ER (mirror)",
            },
        ),
        pdf=f"{RUN}/figures/fig6_mirror.pdf",
        csv=f"{RUN}/tables/fig6.csv",
        provenance=f"{RUN}/tables/fig6.provenance.json",
    log:
        f"{RUN}/logs/figures/fig6_mirror.log",
    conda:
        ENV
    params:
        cells=MIRROR["cells"],
        provenance=provenance(),
    script:
        "../scripts/fig6_mirror.py"


# Figure 7, the expansion's cost per λ and projector: only in a run where an experiment
# (the figures one first) runs more than one InfoNCE arm (report plan "fig7").
rule fig7_tradeoff:
    input:
        summary=f"{RUN}/summary.parquet",
        # The footers name the weights each teacher's meta.json says were loaded.
        teacher_meta=list(teacher_metas().values()),
    output:
        png=report(
            f"{RUN}/figures/fig7_tradeoff.png",
            caption="../report/fig7_tradeoff.rst",
            category="Figures",
            subcategory="Beyond the paper",
            labels={
                "figure": "Figure 7",
                "shows": "ER vs fidelity and accuracy per λ",
            },
        ),
        pdf=f"{RUN}/figures/fig7_tradeoff.pdf",
        csv=f"{RUN}/tables/fig7.csv",
        provenance=f"{RUN}/tables/fig7.provenance.json",
    log:
        f"{RUN}/logs/figures/fig7_tradeoff.log",
    conda:
        ENV
    params:
        options=tradeoff_options(),
        provenance=provenance(),
    script:
        "../scripts/fig7_tradeoff.py"


# Every table as an HTML page the report shows inline (table_sources picks its source).
rule table_html:
    input:
        unpack(table_html_input),
    output:
        html=report(
            f"{RUN}/report/{{table}}.html",
            caption="../report/table_page.rst",
            category="Tables",
            subcategory=lambda wc: TABLE_INFO[wc.table][0],
            labels=lambda wc: table_labels(wc.table, "html"),
        ),
    log:
        f"{RUN}/logs/report/{{table}}_html.log",
    wildcard_constraints:
        table="|".join(TABLE_INFO),
    conda:
        ENV
    params:
        title=lambda wc: f"{TABLE_INFO[wc.table][1]}: {TABLE_INFO[wc.table][2]}",
    script:
        "../scripts/table_html.py"


# The claims' verdicts, summarised for the landing page (workflow/report/workflow.rst).
rule verdict_summary:
    input:
        claims=f"{RUN}/tables/claims.csv",
    output:
        rst=f"{RUN}/report/verdicts.rst",
    log:
        f"{RUN}/logs/report/verdicts.log",
    conda:
        ENV
    script:
        "../scripts/verdict_summary.py"
