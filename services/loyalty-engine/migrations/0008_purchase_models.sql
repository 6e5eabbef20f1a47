-- Issue 17: more purchase models (BG/NBD, Pareto/NBD, MBG/NBD), one chosen by evidence.

-- Which model a version scores with. BG/NBD and MBG/NBD keep (r, alpha, a, b); Pareto/NBD
-- stores (r, alpha, s, beta), with a and b NULL. `selection` says how the model was chosen.
ALTER TABLE churn_models
    ADD COLUMN model     text NOT NULL DEFAULT 'bgnbd'
        CHECK (model IN ('bgnbd', 'pareto-nbd', 'mbgnbd')),
    ADD COLUMN s         double precision,
    ADD COLUMN beta      double precision,
    ADD COLUMN selection text NOT NULL DEFAULT '',
    ALTER COLUMN a DROP NOT NULL,
    ALTER COLUMN b DROP NOT NULL;

-- The evidence: every model fitted for a version, chosen or not. `params` names its four
-- parameters; `holdout_*` are NULL when the history was too short for a time split.
CREATE TABLE churn_model_candidates (
    version                 bigint NOT NULL REFERENCES churn_models (version) ON DELETE CASCADE,
    model                   text NOT NULL,
    chosen                  boolean NOT NULL,
    converged               boolean NOT NULL,
    params                  jsonb,
    log_likelihood          double precision,
    holdout_mae             double precision,
    holdout_aggregate_error double precision,
    reason                  text NOT NULL,
    PRIMARY KEY (version, model)
);
