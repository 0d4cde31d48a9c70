@echo off
rem Build and start MicroPay with docker compose (Docker Desktop) on Windows; prints the
rem gateway URL once every part is healthy. The first run writes .env with random passwords.
rem   run_docker_local.bat          build and start (detached)
rem   run_docker_local.bat down     stop (data stays in the postgres-data volume)
rem   run_docker_local.bat logs     follow the logs
setlocal
cd /d "%~dp0"

if /i "%~1"=="down" (
    docker compose --file docker-compose.yml down
    exit /b %errorlevel%
)
if /i "%~1"=="logs" (
    docker compose --file docker-compose.yml logs --follow
    exit /b %errorlevel%
)
if not "%~1"=="" if /i not "%~1"=="up" (
    echo usage: %~nx0 [up^|down^|logs] 1>&2
    exit /b 64
)

docker compose version >nul 2>&1
if errorlevel 1 (
    echo docker compose v2 is required ^(Docker Desktop^) 1>&2
    exit /b 1
)

if not exist .env (
    rem Letters and digits only: the passwords are written into postgresql:// URLs.
    powershell -NoProfile -ExecutionPolicy Bypass -Command ^
      "$ErrorActionPreference = 'Stop';" ^
      "$rng = [Security.Cryptography.RandomNumberGenerator]::Create();" ^
      "$chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';" ^
      "function New-Password { $bytes = New-Object byte[] 32; $rng.GetBytes($bytes); -join ($bytes | ForEach-Object { $chars[$_ %% $chars.Length] }) };" ^
      "$lines = Get-Content .env.example | ForEach-Object { if ($_ -match '^([A-Z_]+_PASSWORD)=change-me$') { $matches[1] + '=' + (New-Password) } else { $_ } };" ^
      "[IO.File]::WriteAllLines((Join-Path (Get-Location) '.env'), $lines)"
    if errorlevel 1 exit /b 1
    echo wrote .env with new random passwords
)
findstr /r /c:"=change-me$" .env >nul
if not errorlevel 1 (
    echo .env still has a change-me password; set it ^(see .env.example^) 1>&2
    exit /b 1
)

docker compose --file docker-compose.yml up --build --detach --wait
if errorlevel 1 exit /b %errorlevel%
echo MicroPay is up: http://127.0.0.1:8080 (try /healthz; MICROPAY_GATEWAY_PUBLISH in .env changes it); stop it with: %~nx0 down
endlocal
