-- Issue 17: churn driver weights learned by `kizuna fit-model` from the shop's own history, with
-- the calibration of the score to P(no purchase within H days). One row per model version whose
-- fit produced them. `learned` is false when the learned weights did not beat the hand-set ones
-- on the later time split: the row then holds the hand-set weights, calibrated.
CREATE TABLE churn_weights (
    model_version bigint PRIMARY KEY REFERENCES churn_models (version) ON DELETE CASCADE,
    learned       boolean NOT NULL,
    weights       jsonb NOT NULL,
    report        text NOT NULL
);
