// Stripe.js from the configured URL (https://js.stripe.com/v3/ in production, localstripe's copy
// locally) with the configured publishable key; both come from the gateway's /config.json.

/** What the gateway tells the app at /config.json (gateway/nginx.conf). */
export interface RuntimeConfig {
  stripeJsUrl: string;
  stripePublishableKey: string;
}

export interface StripeError {
  message?: string;
  code?: string;
  decline_code?: string;
}

export interface CardElement {
  mount(target: HTMLElement | string): void;
  destroy(): void;
}

/** The part of Stripe.js the app uses. */
export interface StripeJs {
  elements(): { create(type: "card", options?: object): CardElement };
  createPaymentMethod(data: {
    type: "card";
    card: CardElement;
  }): Promise<{ paymentMethod?: { id: string }; error?: StripeError }>;
  confirmCardPayment(
    clientSecret: string,
  ): Promise<{ paymentIntent?: { id: string; status: string }; error?: StripeError }>;
}

declare global {
  interface Window {
    Stripe?: (publishableKey: string) => StripeJs;
  }
}

/** The runtime configuration the gateway serves. */
export async function loadConfig(): Promise<RuntimeConfig> {
  const response = await fetch("/config.json", { credentials: "same-origin" });
  if (!response.ok) throw new Error(`The app's configuration is unavailable (${response.status}).`);
  return (await response.json()) as RuntimeConfig;
}

let loading: Promise<StripeJs> | null = null;

/** Stripe.js, loaded once from the configured URL. */
export function loadStripe(config: RuntimeConfig): Promise<StripeJs> {
  loading ??= new Promise<StripeJs>((resolve, reject) => {
    const script = document.createElement("script");
    script.src = config.stripeJsUrl;
    script.async = true;
    script.onload = () => {
      if (window.Stripe) resolve(window.Stripe(config.stripePublishableKey));
      else reject(new Error("Stripe.js loaded but did not define Stripe."));
    };
    script.onerror = () => {
      loading = null;
      reject(new Error("Stripe.js could not be loaded; card payments are unavailable."));
    };
    document.head.appendChild(script);
  });
  return loading;
}
