import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { Session } from "./api";
import { App } from "./App";
import "./styles.css";

const session = new Session(window.location.origin);
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App session={session} />
  </StrictMode>,
);
