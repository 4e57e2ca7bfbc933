// The schedule explorer, for `gnttab explore` and for a user's own tests.
export {
  type ExploreFailure,
  type ExploreOptions,
  type ExploreProgress,
  type ExploreResult,
  explore,
  type FailureKind,
  type StrategyName,
  type TraceStep,
} from './explorer.ts';
export {
  BOARD_WORDS,
  type Board,
  type CheckResult,
  defineScenario,
  type ExploreArgs,
  type Scenario,
  type ScenarioExport,
  type ScenarioGuest,
  type ScenarioRun,
} from './scenario.ts';
export {
  type BackendResult,
  checkRevoke,
  type FrontendResult,
  mappingBackend,
  type RevokeParams,
  revokeScenario,
  revokingFrontend,
} from './scenarios/revoke.ts';
export { ReplayMismatch } from './strategy.ts';
export { TokenError } from './token.ts';
