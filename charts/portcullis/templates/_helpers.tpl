{{/* Names and labels shared by every template. */}}

{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The settings file of `portcullis run` (docs/configuration.md). Empty optional settings are left
out so the process uses its defaults; `namespace` comes from POD_NAMESPACE (the release namespace).
*/}}
{{- define "portcullis.settings" -}}
{{- $c := .Values.config -}}
{{- $host := .Values.listenAddress -}}
{{- if contains ":" $host -}}{{- $host = printf "[%s]" $host -}}{{- end -}}
{{- $s := dict
  "listen" (dict
    "http" (printf "%s:%d" $host (int .Values.ports.http))
    "https" (printf "%s:%d" $host (int .Values.ports.https))
    "ssh" (printf "%s:%d" $host (int .Values.ports.ssh))
    "admin" (printf "%s:%d" $host (int .Values.ports.admin)))
  "httpRedirect" $c.httpRedirect
  "programmaticRedirectDomains" $c.programmaticRedirectDomains
  "identityProviders" $c.identityProviders
  "sessionLifetime" $c.sessionLifetime
  "bindingLifetime" $c.bindingLifetime
  "signing" $c.signing
  "accessTokenAudience" $c.accessTokenAudience
  "watchNamespaces" $c.watchNamespaces
  "allowLoopbackUpstreams" $c.allowLoopbackUpstreams
  "allowExternalNameServices" $c.allowExternalNameServices
  "publishStatusAddress" $c.publishStatusAddress
  "downstreamMTLS" $c.downstreamMTLS
  "tls" $c.tls
  "log" $c.log
-}}
{{- if $c.authenticateURL -}}
{{- $_ := set $s "authenticateURL" $c.authenticateURL -}}
{{- end -}}
{{- if $c.idp.issuer -}}
{{- $idp := dict "issuer" $c.idp.issuer "clientID" $c.idp.clientID "scopes" $c.idp.scopes "authParams" $c.idp.authParams "allowedAudiences" $c.idp.allowedAudiences -}}
{{- if $c.idp.clientSecretRef.name -}}
{{- $_ := set $idp "clientSecretRef" $c.idp.clientSecretRef -}}
{{- end -}}
{{- $_ := set $s "idp" $idp -}}
{{- end -}}
{{- toYaml $s -}}
{{- end -}}
