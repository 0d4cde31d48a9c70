// The MicroPay API's types, one module per service, generated from their OpenAPI documents.
// Pair them with openapi-fetch (README.md): `createClient<TransactionsPaths>({ baseUrl })`.
export type { components as AuthComponents, paths as AuthPaths } from "./auth";
export type {
  components as NotificationsComponents,
  paths as NotificationsPaths,
} from "./notifications";
export type { components as PaymentComponents, paths as PaymentPaths } from "./payment";
export type {
  components as TransactionsComponents,
  paths as TransactionsPaths,
} from "./transactions";

/** A problem document (RFC 9457): every error of the API, with its stable `type`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  request_id?: string;
  [member: string]: unknown;
}
